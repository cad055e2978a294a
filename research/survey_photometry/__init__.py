"""What the broker's ZTF and Rubin light curves are, measured on the repository's real alerts (the
generated part of docs/surveys.md)."""
