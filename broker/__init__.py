"""dmdt-broker: streaming dmdt-image CNN classifier for astronomical alert streams."""

import os
from importlib.metadata import PackageNotFoundError, version

# numba's parallel kernels and torch both run on OpenMP. With the default (spinning) wait policy,
# idle OpenMP threads of one busy-wait while the other computes: on a 2-core machine torch
# inference after a numba update ran 5-6x slower. Passive waiting removes that and costs nothing
# measurable (docs/streaming.md). Set before numba or torch loads OpenMP (as in dmdt/__init__.py);
# an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("dmdt-broker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.2.0"
