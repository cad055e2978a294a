"""Survey photometry -> a source's light curve in magnitudes (pure numpy: no Kafka, no Avro).

A light curve is one of two kinds, decided once per source and band and kept in its state:

- ``total``: the source's own brightness. ZTF: the reference-image flux of the source's
  counterpart plus the signed difference flux ("DC magnitudes", ZTF Science Data System
  explanatory supplement; ALeRCE's corrected magnitudes). Rubin: ``scienceFlux``, forced PSF
  photometry on the science image. Our own schema: the magnitudes as sent (CRTS replays).
- ``difference``: the difference-image flux alone (ZTF ``magpsf`` of positive differences), for a
  source with no counterpart in the reference image: a transient, whose reference flux is nil.

docs/surveys.md gives the formulas, their sources, the limits and the measurements on the
repository's real alerts. Every detection that does not make a point of the chosen kind is
counted by reason (`Points.dropped`); none is dropped silently.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

TOTAL = "total"
DIFFERENCE = "difference"
KINDS = (TOTAL, DIFFERENCE)
# The kind of a stored row written before rows recorded one (state row format 1, brokers before
# 0.2, whose ZTF and Rubin decoders kept difference-image magnitudes): the pipeline replaces such a
# row's points at the source's next ZTF or Rubin alert (docs/operations.md, upgrading).
LEGACY = "legacy"

MAGERR_PER_RELATIVE_FLUX = 2.5 / math.log(10)  # 1.0857: sigma_m = 1.0857 sigma_f / f
RUBIN_ZEROPOINT = 31.4  # AB magnitude of 1 nJy
# ZTF: a detection has a counterpart in the reference image when the nearest reference-catalogue
# source is closer than this (ALeRCE's threshold: about the seeing's half width at half maximum)
ZTF_NEAR_ARCSEC = 1.4
ZTF_MISSING = -99999.0  # ZTF's value for an absent forced-photometry flux

# Why a detection makes no point (counted per survey, docs/surveys.md):
REFERENCE_FAR = "reference_far"  # ZTF total: counterpart distnr >= ZTF_NEAR_ARCSEC
REFERENCE_MISSING = "reference_missing"  # ZTF total: magnr / sigmagnr / distnr null or invalid
NEGATIVE_DIFFERENCE = "negative_difference"  # ZTF difference: a negative difference, no reference
NONPOSITIVE_FLUX = "nonpositive_total_flux"  # the total flux is <= 0: no magnitude exists
SIGN_MISSING = "sign_missing"  # ZTF: isdiffpos null or not one of t/f/1/0
FLUX_MISSING = "flux_missing"  # Rubin: neither scienceFlux nor templateFlux + psfFlux
FORCED_FLAGGED = "forced_flagged"  # forced photometry with a processing warning or no flux
# A documented fallback, counted but not a loss: Rubin's templateFlux + psfFlux where
# scienceFlux is null
TEMPLATE_PLUS_DIFFERENCE = "fallback_template_plus_difference"


@dataclass(frozen=True, eq=False)
class Points:
    """One band's points of one kind (sorted by time), and the detections that made none."""

    kind: str
    t: np.ndarray  # (n,) float64 MJD
    m: np.ndarray  # (n,) float64 magnitude
    err: np.ndarray  # (n,) float64 1-sigma magnitude error
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> detections
    fallbacks: Counter[str] = field(default_factory=Counter)  # documented fallbacks used

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.t.size)


def ztf_sign(isdiffpos: str | None) -> int:
    """+1 for a positive difference (science minus reference), -1 for a negative one, 0 if the
    sign is missing or unknown. ZTF writes 't' / 'f' (and '1' / '0' in some releases)."""
    if isdiffpos in ("t", "1"):
        return 1
    if isdiffpos in ("f", "0"):
        return -1
    return 0


def ztf_near(distnr: np.ndarray, magnr: np.ndarray, sigmagnr: np.ndarray) -> np.ndarray:
    """Detections with a usable reference counterpart: distnr in [0, 1.4"), magnr and sigmagnr
    positive and finite (NaN marks a null)."""
    with np.errstate(invalid="ignore"):
        return (
            (distnr >= 0)
            & (distnr < ZTF_NEAR_ARCSEC)
            & (magnr > 0)
            & np.isfinite(magnr)
            & (sigmagnr > 0)
            & np.isfinite(sigmagnr)
        )


def ztf_dc_magnitudes(
    magpsf: np.ndarray, sigmapsf: np.ndarray, sign: np.ndarray, magnr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ZTF DC (total-flux) magnitudes: f = 10^(-0.4 magnr) + sign 10^(-0.4 magpsf), m = -2.5
    log10 f. The error is the difference flux's, sigma_m = 10^(-0.4 magpsf) sigmapsf / f: the
    reference flux is one value per reference image, shared by every detection made on it, so
    its error (sigmagnr) shifts the whole light curve and cancels in every dm (ALeRCE publishes
    the same value as e_mag_corr_ext). Returns (m, err, ok); ok is False where f <= 0."""
    ref = 10.0 ** (-0.4 * magnr)
    diff = 10.0 ** (-0.4 * magpsf)
    total = ref + sign * diff
    ok = total > 0
    safe = np.where(ok, total, 1.0)
    return -2.5 * np.log10(safe), diff * sigmapsf / safe, ok


def ztf_forced_dc_magnitudes(
    flux: np.ndarray, flux_err: np.ndarray, magzpsci: np.ndarray, magnr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ZTF forced photometry (fp_hists) as DC magnitudes: the reference flux in the science
    image's DN, 10^(0.4 (magzpsci - magnr)), plus forcediffimflux [DN]; m = magzpsci - 2.5 log10
    of the sum, sigma_m = 1.0857 forcediffimfluxunc / sum. Returns (m, err, ok)."""
    total = 10.0 ** (0.4 * (magzpsci - magnr)) + flux
    ok = total > 0
    safe = np.where(ok, total, 1.0)
    return magzpsci - 2.5 * np.log10(safe), MAGERR_PER_RELATIVE_FLUX * flux_err / safe, ok


def flux_magnitudes(
    flux: np.ndarray, flux_err: np.ndarray, zeropoint: float = RUBIN_ZEROPOINT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AB magnitudes of fluxes (nJy by default): m = zp - 2.5 log10 f, sigma_m = 1.0857
    sigma_f / f. Returns (m, err, ok); ok is False where f <= 0 (no magnitude exists)."""
    ok = flux > 0
    safe = np.where(ok, flux, 1.0)
    return zeropoint - 2.5 * np.log10(safe), MAGERR_PER_RELATIVE_FLUX * flux_err / safe, ok


def sorted_points(
    kind: str,
    t: np.ndarray,
    m: np.ndarray,
    err: np.ndarray,
    dropped: Counter[str] | None = None,
    fallbacks: Counter[str] | None = None,
) -> Points:
    """`Points` sorted by time (stable: ties keep their order)."""
    if t.size > 1 and (t[1:] < t[:-1]).any():
        order = np.argsort(t, kind="stable")
        t, m, err = t[order], m[order], err[order]
    return Points(kind, t, m, err, dropped or Counter(), fallbacks or Counter())
