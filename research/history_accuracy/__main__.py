"""``python -m research.history_accuracy``: accuracy after k points -> docs/history.md."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from research.history_accuracy.runner import main

raise SystemExit(main())
