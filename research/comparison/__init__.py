"""Every candidate model on the fixed folds and the held-out part: docs/beyond.md."""
