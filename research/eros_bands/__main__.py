"""``python -m research.eros_bands``: EROS-1's bands alone and together -> docs/multiband.md."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per job; before numba starts
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from research.eros_bands.runner import main

raise SystemExit(main())
