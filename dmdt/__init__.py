"""dmdt: the shared core of dmdt-broker (grids, numba kernels, light curves, models).

Both the streaming consumer (`broker`) and the trainer (`trainer`) import this package, so the
dmdt image a model was trained on is computed by exactly the code that serves it.
"""

__version__ = "0.1.0"
