"""Physical sanity checks of decoded alerts: values no survey can produce are refused at decode.

The decoders (broker.decode) call these once per message, after the survey's own fields are
turned into times (MJD), magnitudes and errors; a failure is a `DecodeError` with reason
``invalid_value`` and the whole message is dead-lettered. They catch what finiteness checks let
through: a time of jd 0 (MJD -2,399,999.5) or 1e300 stays in a source's history for good and
makes its period search run for seconds or panic; a magnitude of 3e38; a source id that is empty,
100,000 characters long or holds a NUL (the durable store's key separator).

Per survey (`RULES`; any other survey name, as the own ``lightcurve_alert`` schema carries, gets
`DEFAULT_RULES`):

====================  ======================  =============================================
survey                times (MJD, inclusive)  source id
====================  ======================  =============================================
``ztf``               58,000 - 66,154         ``ZTF`` + 2-digit year + 7 lowercase letters
                      (2017-09-04 - 2040)     (``objectId``, e.g. ZTF18aawdnqe)
``rubin``             60,000 - 69,000         a positive int64 in decimal (``diaObjectId``) or
                      (2023-02 - 2047-08)     ``sso:`` + one (``ssObjectId``)
any other             0 - 80,000              1 to 128 printable ASCII characters, no space
                      (1858-11-17 - 2077-11)
====================  ======================  =============================================

For every survey: magnitudes in [-10, 50] (nothing a survey observes is brighter than -10;
50 is ten million times fainter than any survey's limit, so a value beyond it is a unit or
encoding error; for Rubin this is scienceFlux in [3.6e-8, 3.6e16] nJy), 1-sigma magnitude errors in
[0, 10,000] (real Rubin detections reach 96 mag: a positive noise flux; 1e4 is a signal-to-noise
of 1e-4), right ascension in [0, 360] and declination in [-90, 90] degrees when given, band
names of 1 to 16 and survey names of 1 to 32 printable ASCII characters. Times bound the
baseline of a source's history (at most 80,000 days, so a period search stays bounded: see
broker.features' guard).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from broker.avro import DecodeError

MAG_RANGE = (-10.0, 50.0)
MAX_MAG_ERROR = 1e4
_PRINTABLE = "[!-~]"  # printable ASCII without the space: no NUL, control or non-ASCII character
BAND = re.compile(f"{_PRINTABLE}{{1,16}}")
SURVEY = re.compile(f"{_PRINTABLE}{{1,32}}")


@dataclass(frozen=True)
class SurveyRules:
    """The time window and source id form of one survey."""

    first_mjd: float
    last_mjd: float
    source_id: re.Pattern[str]
    id_form: str  # the source id rule in words, for the error message


RULES = {
    "ztf": SurveyRules(
        58_000.0, 66_154.0, re.compile(r"ZTF[0-9]{2}[a-z]{7}"), "ZTF + 2 digits + 7 letters"
    ),
    "rubin": SurveyRules(
        60_000.0,
        69_000.0,
        re.compile(r"(sso:)?[1-9][0-9]{0,18}"),
        "a positive decimal integer, or sso: and one",
    ),
}
DEFAULT_RULES = SurveyRules(
    0.0, 80_000.0, re.compile(f"{_PRINTABLE}{{1,128}}"), "1-128 printable ASCII characters"
)


def rules_for(survey: str) -> SurveyRules:
    """The rules of a survey (`DEFAULT_RULES` for a survey without its own)."""
    return RULES.get(survey, DEFAULT_RULES)


def _shown(text: str, limit: int = 40) -> str:
    """A bounded repr of a rejected string (error messages must stay small)."""
    return repr(text[:limit]) + (f"... ({len(text)} characters)" if len(text) > limit else "")


def check_header(
    survey: str, source_id: str, alert_time: float, ra: float | None, dec: float | None
) -> None:
    """The values that describe the whole alert: survey name, source id, alert time, position."""
    if not SURVEY.fullmatch(survey):
        raise DecodeError("invalid_value", f"survey name {_shown(survey)}")
    rules = rules_for(survey)
    if not rules.source_id.fullmatch(source_id):
        raise DecodeError(
            "invalid_value", f"{survey} source id {_shown(source_id)}: want {rules.id_form}"
        )
    if not rules.first_mjd <= alert_time <= rules.last_mjd:  # also False for NaN
        raise DecodeError(
            "invalid_value",
            f"alert time MJD {alert_time} outside {survey}'s {rules.first_mjd:g}-"
            f"{rules.last_mjd:g}",
        )
    if ra is not None and not 0.0 <= ra <= 360.0:
        raise DecodeError("invalid_value", f"ra {ra} outside 0-360 degrees")
    if dec is not None and not -90.0 <= dec <= 90.0:
        raise DecodeError("invalid_value", f"dec {dec} outside -90-90 degrees")


def check_points(survey: str, band: str, tme: np.ndarray) -> None:
    """One band's points, ``tme`` (3, n) float64: times, magnitudes, errors."""
    if not BAND.fullmatch(band):
        raise DecodeError("invalid_value", f"band name {_shown(band)}")
    rules = rules_for(survey)
    t, m, err = tme
    checks = (
        ("time (MJD)", t, rules.first_mjd, rules.last_mjd),
        ("magnitude", m, *MAG_RANGE),
        ("magnitude error", err, 0.0, MAX_MAG_ERROR),
    )
    for what, values, low, high in checks:
        bad = ~((values >= low) & (values <= high))  # NaN is bad too
        if bad.any():
            value = float(values[np.argmax(bad)])
            shown = f"{value:g}" if math.isfinite(value) else str(value)
            raise DecodeError(
                "invalid_value", f"{what} {shown} in band {band} outside {low:g} to {high:g}"
            )
