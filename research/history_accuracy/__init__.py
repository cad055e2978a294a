"""Accuracy while a source's history is still short: the shipped models on the first k points of
the held-out curves (docs/history.md)."""
