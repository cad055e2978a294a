"""dmdt: the shared core of dmdt-broker (grids, numba kernels, light curves, models).

Both the streaming consumer (`broker`) and the trainer (`trainer`) import this package, so the
dmdt image a model was trained on is computed by exactly the code that serves it.
"""

import os

# numba's parallel kernels and torch both run on OpenMP. With the default (spinning) wait policy,
# idle OpenMP threads of one busy-wait while the other computes: on a 2-core machine torch
# inference after a numba update ran 5-6x slower. Passive waiting removes that and costs nothing
# measurable (docs/streaming.md). Set before numba or torch loads OpenMP; an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.2.0"
