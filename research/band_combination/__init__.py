"""One answer per object from two bands: each rule of dmdt.bands against one band alone, on EROS-1
(the generated block of docs/surveys.md)."""
