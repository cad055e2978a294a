"""``python -m research.band_combination``: combining bands -> docs/surveys.md's block."""

from research.band_combination.runner import main

raise SystemExit(main())
