"""``python -m research.ceiling``: learning curve, errors by data quality -> docs/ceiling.md."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker (LightGBM, numba)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from research.ceiling.runner import main

raise SystemExit(main())
