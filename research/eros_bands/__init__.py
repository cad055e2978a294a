"""EROS-1's two bands one at a time and together, and the CRTS model on one EROS-1 band
(docs/multiband.md)."""
