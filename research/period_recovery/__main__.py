"""``python -m research.period_recovery``: the period-recovery benchmark -> docs/periods.md."""

from research.period_recovery.runner import main

raise SystemExit(main())
