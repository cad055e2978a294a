"""What forced photometry is worth to the classifiers: the held-out curves whole against the
epochs a difference-image survey would detect (the generated block of docs/surveys.md)."""
