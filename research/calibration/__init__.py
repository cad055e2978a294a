"""Are the classifier's probabilities ones a user can threshold, and can it say "unknown" for the
types it was not trained on (docs/calibration.md)."""
