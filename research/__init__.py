"""The research behind the shipped models: every experiment that measured them, apart from the
product (dmdt/, broker/, trainer/), which never imports it.

One pattern for every experiment, each a subpackage named by what it measures:

- ``runner``: computes, resumable: each part is saved to the experiment's cache as it ends, and a
  rerun skips what is there; its ``main`` is the command line;
- the cache: JSON (and npz for per-curve arrays) under a results folder (the committed one is
  under docs/), keyed by the data hash and the features' version, so a change of either starts
  afresh and a rerun on the same data changes nothing;
- ``report``: writes the docs page and its figures from the cache alone, with no recomputation
  (``--report-only``);
- ``python -m research.<name>``: the entry point.

Shared: :mod:`research.folds` (every candidate on the fixed folds), :mod:`research.candidates`
(the candidate models), :mod:`research.cache` (how results are written).
"""
