r"""The WW-PGD spectral projection of one layer's ESD tail, as a pure function on eigenvalues.

Notation: lambda_1 <= ... <= lambda_M are the eigenvalues of W^T W (squared singular values of W,
M = min(out, in); a Conv2D kernel is the matrix ``weight.reshape(out, -1)``, the same matrix whose
spectrum is fitted). Normalized eigenvalues are ``l_i = nu * lambda_i`` with ``nu = M / sum(lambda)``
(mean 1), as in weightwatcher's detX. The tail is the k largest eigenvalues, k chosen from the
power-law fit (num_pl_spikes), the detX tail (detX_num) or the midpoint of the two.

Targets. The tail should look like k order statistics of a power law with exponent alpha* whose
normalized trace-log sum_tail log l_i equals T (SETOL: T = 0). The expected quantiles of a power
law with CCDF (x / xmin)^(1 - alpha*) at descending rank r = 1..k are
``q_r = ((r - 1/2) / k) ** (-1 / (alpha* - 1))``; only their shape matters, the level is fixed by
T:  ``y*_r = log q_r - mean(log q) + T / k``  (so sum_r y*_r = T exactly).

Step. With ``y_r = log l_r`` and ``d_r = y*_r - y_r`` every tail eigenvalue moves in log space by a
fraction w_r of its own distance: ``y'_r = y_r + w_r d_r`` with ``w_r in [eta, 1]``. So an
eigenvalue below its target grows, one above it shrinks, none passes its target (w <= 1) and a
singular value never changes sign (it is exp of a real number). The trace-log moves by
sum_r w_r d_r; closing the fraction c = max(eta, tracelog_step) of the gap sum_r d_r = T - sum y
needs sum_r w_r d_r = c * sum_r d_r. With A = sum of the positive d_r, B = sum of |negative d_r|:

* A >= B:  w = eta on the shrinking side, w = (c (A - B) + eta B) / A on the growing side;
* A <  B:  w = eta on the growing side,   w = (eta A - c (A - B)) / B on the shrinking side,

both in [eta, 1] for c in [eta, 1]. This is the retraction: it is exact (with tracelog_step = 1
the normalized trace-log equals T to rounding) and, unlike a uniform rescaling of the tail, it
never moves an eigenvalue away from its target.

Realizing the new normalized tail exp(y'_r) as raw eigenvalues: the normalized eigenvalues sum
to M, so the bulk keeps M - sum exp(y') of that mass (the projection is infeasible, and the layer
left alone, when that is <= 0). An alpha* tail of k eigenvalues with trace-log T holds a mass
that grows like k log(2k) / e, so a long fitted tail can ask for more than the whole spectrum
(alpha* = 2, T = 0, k = 112 of M = 200 needs ~240): the tail is then shortened to the largest k
whose target holds at most `max_tail_mass` * M (the stats report both sizes).
``preserve="norm"`` keeps sum(lambda) = ||W||_F^2 and so nu:
the raw tail is exp(y') / nu and the bulk is scaled by one factor; targets and monotonicity then
hold in raw units too. ``preserve="bulk"`` keeps the bulk's raw eigenvalues and solves for the new
nu = (M - sum exp(y')) / sum(bulk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fit.detx import detx
from ..fit.powerlaw import PowerLawFit, fit_power_law


@dataclass(frozen=True)
class TailFit:
    """The fit of a layer's ESD and the tail size it implies."""

    fit: PowerLawFit
    detx_num: int
    k: int  # eigenvalues in the chosen tail


@dataclass(frozen=True)
class TailStep:
    """One projection of an ascending eigenvalue array; arrays are aligned with the input."""

    evals: np.ndarray  # new eigenvalues, same order as the input
    k: int
    targets: np.ndarray  # normalized targets exp(y*) of the tail (ascending input order)
    weights: np.ndarray  # w_r of the tail
    tracelog_before: float
    tracelog_after: float  # recomputed from `evals`
    bulk_scale: float  # factor applied to the bulk's raw eigenvalues
    status: str = "projected"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "projected"


def choose_tail(evals: np.ndarray, tail: str, thresh: float = 1e-5) -> TailFit:
    """Power-law fit, detX tail and the tail size the `tail` option asks for."""
    fit = fit_power_law(evals, thresh=thresh)
    num_detx = detx(evals).num
    num_pl = fit.n_tail if fit.ok else 0
    if tail == "pl":
        k = num_pl
    elif tail == "detx":
        k = num_detx
    else:
        k = int(round((num_pl + num_detx) / 2)) if num_pl and num_detx else 0
    return TailFit(fit=fit, detx_num=int(num_detx), k=int(k))


def tracelog(evals: np.ndarray, k: int) -> float:
    """Normalized trace-log of the k largest eigenvalues of an ascending array (mean scaled to 1)."""
    evals = np.asarray(evals, dtype=np.float64)
    scaled = evals * (evals.size / evals.sum())
    return float(np.sum(np.log(np.sort(scaled)[evals.size - k:])))


def target_logs(k: int, alpha: float, tracelog_target: float) -> np.ndarray:
    """y*: log normalized targets of a k-point power-law tail, ascending, summing to the target."""
    ranks = np.arange(k, 0, -1, dtype=np.float64)  # ascending order = descending rank k..1
    logq = -np.log((ranks - 0.5) / k) / (alpha - 1.0)
    return logq - logq.mean() + tracelog_target / k


def target_mass(k: int, alpha: float, tracelog_target: float) -> float:
    """Normalized spectral mass (sum of exp(y*)) that a k-point target tail holds."""
    return float(np.exp(target_logs(k, alpha, tracelog_target)).sum())


def capped_tail(k: int, m: int, alpha: float, tracelog_target: float, max_tail_mass: float) -> int:
    """Largest k' <= k whose target tail holds at most `max_tail_mass` * M of the mass (M = m)."""
    limit = max_tail_mass * m
    if target_mass(k, alpha, tracelog_target) <= limit:
        return k
    lo, hi = 1, k  # the target mass grows with k: bisect for the last k that fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if target_mass(mid, alpha, tracelog_target) <= limit else (lo, mid)
    return lo


def step_weights(delta: np.ndarray, eta: float, closed: float) -> np.ndarray:
    """Per-eigenvalue fractions w in [eta, 1] with sum(w * delta) = closed * sum(delta)."""
    grow = delta > 0
    a = float(delta[grow].sum())
    b = float(-delta[~grow].sum())
    w = np.full(delta.shape, eta)
    if a >= b and a > 0:
        w[grow] = min(1.0, (closed * (a - b) + eta * b) / a)
    elif b > a:
        w[~grow] = min(1.0, (eta * a - closed * (a - b)) / b)
    return w


def project_tail(evals: np.ndarray, k: int, *, target_alpha: float = 2.0, tracelog_target: float = 0.0,
                 eta: float = 0.5, tracelog_step: float = 1.0, preserve: str = "norm") -> TailStep:
    """Move the k largest eigenvalues of an ascending array toward the target tail (module doc)."""
    lam = np.asarray(evals, dtype=np.float64)
    m = lam.size
    tail = slice(m - k, m)
    nu = m / lam.sum()
    y = np.log(lam[tail] * nu)
    ystar = target_logs(k, target_alpha, tracelog_target)
    delta = ystar - y
    closed = max(eta, tracelog_step)
    w = step_weights(delta, eta, closed)
    ynew = y + w * delta
    tail_mass = float(np.exp(ynew).sum())
    before = float(y.sum())
    bulk = lam[: m - k]
    if tail_mass >= m or bulk.sum() <= 0:
        return TailStep(lam.copy(), k, np.exp(ystar), w, before, before, 1.0, status="infeasible",
                        reason=f"a tail of {k} eigenvalues at alpha={target_alpha:g} with trace-log "
                               f"{tracelog_target:g} needs {tail_mass:.3g} of the layer's spectral mass {m}")
    if preserve == "norm":
        new_tail = np.exp(ynew) / nu
        bulk_scale = (lam.sum() - new_tail.sum()) / bulk.sum()
    else:
        nu_new = (m - tail_mass) / bulk.sum()
        new_tail = np.exp(ynew) / nu_new
        bulk_scale = 1.0
    out = np.concatenate([bulk * bulk_scale, new_tail])
    after = float(np.sum(np.log(new_tail * (m / out.sum()))))
    return TailStep(out, k, np.exp(ystar), w, before, after, float(bulk_scale))
