"""Fingers: a few eigenvalues far beyond the power-law tail, clipped as weightwatcher 0.7.7's
``fix_fingers='clip_xmax'`` does.

Rule (weightwatcher's fit_clipped_powerlaw, re-derived): fit the whole spectrum (the *raw* fit);
then for k = 2, 3, ..., max_fingers - 1 refit with the k largest eigenvalues removed. Stop at the
first k whose alpha has fallen by more than `finger_thresh` (1.0) below the raw alpha: that fit is
kept and k eigenvalues are fingers. Stop without change if a refit's alpha reaches `min_alpha`
(2.0) first, or when no k qualifies. Dropping a single eigenvalue is never tried (the loop
starts at 2).

The rule only ever lowers alpha: it catches fingers that pull the KS choice of xmin up into
themselves (a steep, high raw alpha); outliers that merely sit beyond a well-fitted tail lower the
raw alpha instead and are left alone (see `tailscope.fit.dragon` for a test of those).
weightwatcher also resets max_fingers to 10 whenever it is below half the number of eigenvalues;
we use the value given.

Difference from weightwatcher, on purpose: `num_fingers` is k, the number of eigenvalues removed;
weightwatcher reports k - 1 for the same fit (its loop index minus one).

Ours, ``fix_fingers='dragon_kings'`` (`fit_dragon_kings`): the clip above, then, as long as the
Dragon-King test (`tailscope.fit.dragon`) flags a j-th largest eigenvalue of the current fit as too
far out for it, remove the top j (for the largest such j) and refit. weightwatcher's rule stops at the first k that brings the fit back
and so counts the eigenvalues it had to remove, not all outliers; peeling the significant ones off
as well counts them all (up to `max_fingers` in total).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tailscope.fit.dragon import dragon_kings
from tailscope.fit.powerlaw import PowerLawFit, fit_power_law

FINGER_THRESH = 1.0
MIN_ALPHA = 2.0


@dataclass(frozen=True)
class ClippedFit:
    fit: PowerLawFit  # the kept fit (the raw one when no fingers)
    raw: PowerLawFit  # the fit of the whole spectrum
    num_fingers: int  # eigenvalues removed from the top


def fit_clipped(
    evals: np.ndarray, *, thresh: float = 1e-5, max_fingers: int = 10,
    finger_thresh: float = FINGER_THRESH, min_alpha: float = MIN_ALPHA,
) -> ClippedFit:
    """Raw fit and the fit with the fingers removed, of an ascending eigenvalue array.

    Nine fingers spaced like a steep power law capture the raw fit (alpha 13); removing the top
    two already sends the fit back to the planted tail (alpha 2.5; the seven fingers left pull it
    to 2.2), so the rule stops there: it counts the eigenvalues it had to remove, not all outliers.

    >>> rng = np.random.default_rng(0)
    >>> body = np.r_[rng.uniform(0.05, 1, 400), (1 - rng.random(100)) ** (-1 / 1.5)]
    >>> fingers = body.max() * 10 * (1 - (np.arange(9) + 0.5) / 9) ** (-1 / 11)
    >>> out = fit_clipped(np.sort(np.r_[body, fingers]))
    >>> out.num_fingers, round(out.raw.alpha, 1), round(out.fit.alpha, 1)
    (2, 13.2, 2.2)
    """
    data = np.sort(np.asarray(evals, dtype=np.float64))
    data = data[data > thresh]
    raw = fit_power_law(data, thresh=thresh)
    if not raw.ok:
        return ClippedFit(raw, raw, 0)
    for k in range(2, max_fingers):
        if data.size - k < 2:
            break
        fit = fit_power_law(data[:-k], thresh=thresh)
        if not fit.ok:
            break
        if fit.alpha + finger_thresh < raw.alpha:
            return ClippedFit(fit, raw, k)
        if fit.alpha <= min_alpha:
            break
    return ClippedFit(raw, raw, 0)


def fit_dragon_kings(
    evals: np.ndarray, *, thresh: float = 1e-5, max_fingers: int = 10, confidence: float = 0.95,
) -> ClippedFit:
    """weightwatcher's clip, then peel off the eigenvalues the Dragon-King test flags, refitting each time.

    On the nine-finger spectrum of `fit_clipped`, the clip removes two and the test the other seven:

    >>> rng = np.random.default_rng(0)
    >>> body = np.r_[rng.uniform(0.05, 1, 400), (1 - rng.random(100)) ** (-1 / 1.5)]
    >>> fingers = body.max() * 10 * (1 - (np.arange(9) + 0.5) / 9) ** (-1 / 11)
    >>> out = fit_dragon_kings(np.sort(np.r_[body, fingers]))
    >>> out.num_fingers, round(out.fit.alpha, 1)
    (9, 2.6)
    """
    data = np.sort(np.asarray(evals, dtype=np.float64))
    data = data[data > thresh]
    clipped = fit_clipped(data, thresh=thresh, max_fingers=max_fingers)
    fit, removed = clipped.fit, clipped.num_fingers
    while fit.ok and removed < max_fingers:
        flagged = min(_outlying(data[: data.size - removed], fit, confidence), max_fingers - removed)
        refit = fit_power_law(data[: data.size - removed - flagged], thresh=thresh) if flagged else None
        if refit is None or not refit.ok:
            break
        fit, removed = refit, removed + flagged
    return ClippedFit(fit, clipped.raw, removed)


def _outlying(data: np.ndarray, fit: PowerLawFit, confidence: float) -> int:
    """The largest j whose j-th largest eigenvalue the Dragon-King test flags: those j are all beyond it."""
    p = dragon_kings(data, fit.xmin, fit.alpha, confidence=confidence).pvalues
    significant = np.nonzero(p < (1.0 - confidence) / max(p.size, 1))[0]
    return int(significant[-1]) + 1 if significant.size else 0
