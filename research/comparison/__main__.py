"""``python -m research.comparison``: every candidate on the fixed folds -> docs/beyond.md."""

from research.comparison.runner import main

raise SystemExit(main())
