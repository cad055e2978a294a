#!/usr/bin/env python
"""Reproduce the experiments of Mahabal et al. 2017 on the repository's data -> docs/results.md.

Each experiment is cached as docs/results/<name>.json (part by part, so an interrupted run
resumes); --force recomputes, --quick is a small smoke run, --only picks experiments.
Same as ``dmdt-train reproduce``.
"""

import sys

from trainer.experiments.runner import main

if __name__ == "__main__":
    sys.exit(main())
