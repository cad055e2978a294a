"""How often each period search finds a known period injected into real survey cadences:
docs/periods.md."""
