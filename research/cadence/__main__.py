"""``python -m research.cadence``: every candidate in other cadences -> docs/cadence.md."""

from research.cadence.runner import main

raise SystemExit(main())
