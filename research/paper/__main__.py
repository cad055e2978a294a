"""``python -m research.paper``: the paper's experiments -> docs/results.md."""

from research.paper.runner import main

raise SystemExit(main())
