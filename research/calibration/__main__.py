"""``python -m research.calibration``: calibration and the open set -> docs/calibration.md."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per job; before numba starts
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from research.calibration.runner import main

raise SystemExit(main())
