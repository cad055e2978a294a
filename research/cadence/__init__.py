"""Which model survives other cadences: every candidate on the held-out CRTS part as it is and
thinned to other surveys' cadences, and on EROS-1 (docs/cadence.md)."""
