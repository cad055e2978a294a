"""``python -m research.forced_photometry``: forced photometry's value -> docs/surveys.md."""

from research.forced_photometry.runner import main

raise SystemExit(main())
