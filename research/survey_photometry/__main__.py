"""``python -m research.survey_photometry``: the surveys' light curves -> docs/surveys.md."""

from research.survey_photometry.runner import main

raise SystemExit(main())
