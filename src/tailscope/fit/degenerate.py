"""Spectra with no resolvable power-law tail get status 'degenerate' (ours, not in weightwatcher).

The KS scan always returns *some* fit: an orthogonal matrix (every eigenvalue 1 up to rounding)
gave alpha ~1.7e6 with status 'success', fingers and a confidence interval. A fit is degenerate,
with NaN fit columns and a reason, when

* the eigenvalues above the threshold are near-constant: log(lambda_max / lambda_min) < NEAR_CONSTANT
  (1e-3, a spread of 0.1%; rounding in float32 or float64 is far below it);
* fewer than MIN_DISTINCT (5) of them are distinct, values closer than DISTINCT_RTOL * lambda_max
  (1e-6, above float32 rounding of the eigenvalues) counting as one;
* the chosen tail holds fewer than MIN_TAIL (5) distinct eigenvalues: no exponent can be resolved
  from a handful of points (its sigma is (alpha - 1) / sqrt(n), as large as alpha itself).

weightwatcher reports such fits as numbers; `fit_power_law` still does (its parity with WWFit is
unchanged), and the row-level fit (`tailscope.rows.diagnostics.primary_fit`) applies this check, so no
fingers, interval or Dragon-King count is computed on them.
"""

from __future__ import annotations

import numpy as np

from tailscope.fit.powerlaw import PowerLawFit

NEAR_CONSTANT = 1e-3
MIN_DISTINCT = 5
MIN_TAIL = 5
DISTINCT_RTOL = 1e-6
STATUS = "degenerate"


def distinct_count(values: np.ndarray, scale: float) -> int:
    """Number of distinct values of an ascending array, gaps <= DISTINCT_RTOL * scale merged."""
    if values.size == 0:
        return 0
    return 1 + int(np.count_nonzero(np.diff(values) > DISTINCT_RTOL * scale))


def degenerate_reason(evals: np.ndarray, fit: PowerLawFit, thresh: float = 1e-5) -> str:
    """Why the spectrum has no resolvable tail ('' when it has one); `fit` is its power-law fit."""
    data = np.sort(np.asarray(evals, dtype=np.float64))
    data = data[data > thresh]
    if data.size == 0:
        return ""
    top = float(data[-1])
    spread = float(np.log(top / data[0]))
    if spread < NEAR_CONSTANT:
        return (f"degenerate spectrum: all {data.size} eigenvalues above {thresh:g} lie within a factor "
                f"{np.expm1(spread):.1e} + 1 of each other (near-constant, e.g. an orthogonal matrix): no tail to fit")
    distinct = distinct_count(data, top)
    if distinct < MIN_DISTINCT:
        return f"degenerate spectrum: only {distinct} distinct eigenvalue(s) above {thresh:g} (< {MIN_DISTINCT}): no tail to fit"
    if fit.ok:
        in_tail = distinct_count(data[(data >= fit.xmin) & (data <= fit.xmax)], top)
        if in_tail < MIN_TAIL:
            return f"degenerate tail: the KS-chosen tail holds {in_tail} distinct eigenvalue(s) (< {MIN_TAIL}): alpha not resolvable"
    return ""


def degenerate_fit(reason: str) -> PowerLawFit:
    """A fit with NaN numbers, status 'degenerate' and the reason."""
    nan = float("nan")
    return PowerLawFit(nan, nan, nan, nan, nan, 0, status=STATUS, reason=reason)


def checked(evals: np.ndarray, fit: PowerLawFit, thresh: float = 1e-5) -> PowerLawFit:
    """`fit` itself, or its degenerate replacement when the spectrum has no resolvable tail."""
    if fit.status not in ("success",):
        return fit
    reason = degenerate_reason(evals, fit, thresh)
    return degenerate_fit(reason) if reason else fit
