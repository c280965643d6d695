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

both in [eta, 1] for c in [eta, 1]. If that step would leave the bulk less than half the mass it
has at the target, all w are moved toward 1 together (w + t (1 - w), smallest such t), which keeps
every guarantee and only closes more of the gap. This is the retraction: it is exact (with
tracelog_step = 1 the normalized trace-log equals T to rounding) and, unlike a uniform rescaling
of the tail, it never moves an eigenvalue away from its target.

Realizing the new normalized tail exp(y'_r) as raw eigenvalues: the normalized eigenvalues sum
to M, so the bulk keeps M - sum exp(y') of that mass (the projection is infeasible, and the layer
left alone, when that is <= 0). ``preserve="norm"`` keeps sum(lambda) = ||W||_F^2 and so nu: the
raw tail is exp(y') / nu and the bulk is scaled by one factor; targets and monotonicity then hold
in raw units too. ``preserve="bulk"`` keeps the bulk's raw eigenvalues and solves for the new
nu = (M - sum exp(y')) / sum(bulk).

Which tail sizes are realizable. The target's trace-log T = 0 puts the tail's geometric mean at
the spectrum's mean, and an alpha* = 2 shape spans a factor ~2k, so the smallest target sits near
1/e of the mean while the tail holds a mass f(k) ~ k log(2k) / e. For the projected directions to
stay the tail, the bulk (scaled to the remaining mass M - f(k)) must lie below the smallest
target; and f(k) < M. Together these admit a narrow window of k (about 0.4-0.45 M for alpha* = 2,
T = 0, nearly independent of the bulk's shape): `tail_window` computes it exactly and the tail
size chosen by the fit (power law, detX or their midpoint) is moved to the nearest k inside it.
The stats report both sizes; a layer with an empty window is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tailscope.fit.detx import detx
from tailscope.fit.powerlaw import PowerLawFit, fit_power_law


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
    closed: float = 1.0  # fraction of the trace-log gap closed (>= max(eta, tracelog_step))
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


def tail_window(evals: np.ndarray, alpha: float, tracelog_target: float) -> np.ndarray:
    """Every tail size k whose full target is realizable: mass-feasible and above the bulk.

    For each k (vectorized over k): the target tail's normalized mass f(k) = sum exp(y*) must be
    below M, and once the bulk is scaled to hold the remaining M - f(k), its largest eigenvalue
    must not exceed the target tail's smallest, so that the projected directions stay the tail.
    """
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    m = lam.size
    if m < 3:
        return np.empty(0, dtype=int)
    p = 1.0 / (alpha - 1.0)
    k = np.arange(2, m, dtype=np.float64)
    r = np.arange(1, m, dtype=np.float64)
    sum_log = np.cumsum(np.log(r - 0.5))[1:]  # sum_{r<=k} log(r - 1/2)
    sum_pow = np.cumsum((r - 0.5) ** -p)[1:]  # sum_{r<=k} (r - 1/2)^-p
    mean_logq = p * (np.log(k) - sum_log / k)
    level = tracelog_target / k - mean_logq
    mass = np.exp(level + p * np.log(k)) * sum_pow
    smallest = np.exp(level - p * np.log((k - 0.5) / k))
    nu = m / lam.sum()
    ki = k.astype(int)
    bulk_sum = np.cumsum(lam)[m - ki - 1] * nu
    bulk_max = lam[m - ki - 1] * nu
    with np.errstate(divide="ignore", invalid="ignore"):
        ordered = bulk_max * (m - mass) / bulk_sum <= smallest
    return ki[(mass < m) & ordered & (bulk_sum > 0)]


def nearest_in_window(k: int, window: np.ndarray) -> int:
    """The realizable tail size closest to the chosen one (0 when none is realizable)."""
    if window.size == 0:
        return 0
    return int(window[np.argmin(np.abs(window - k))])


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
    w = _keep_bulk_mass(y, delta, w, m, float(np.exp(ystar).sum()))
    closed = float((w * delta).sum() / delta.sum()) if delta.sum() != 0 else closed
    ynew = y + w * delta
    tail_mass = float(np.exp(ynew).sum())
    before = float(y.sum())
    bulk = lam[: m - k]
    if tail_mass >= m or bulk.sum() <= 0:
        return TailStep(lam.copy(), k, np.exp(ystar), w, before, before, 1.0, closed, status="infeasible",
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
    return TailStep(out, k, np.exp(ystar), w, before, after, float(bulk_scale), closed)


def _keep_bulk_mass(y: np.ndarray, delta: np.ndarray, w: np.ndarray, m: int, target_mass: float) -> np.ndarray:
    """Lengthen the step (w -> w + t (1 - w)) until the bulk keeps at least half the mass it has at
    the target. Every w stays in [eta, 1] and the closed trace-log fraction only grows, so the
    guarantees hold; at t = 1 the step is the (realizable) target itself."""
    limit = (m + target_mass) / 2
    mass = lambda t: float(np.exp(y + (w + t * (1 - w)) * delta).sum())  # noqa: E731
    if mass(0.0) <= limit:
        return w
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if mass(mid) <= limit else (mid, hi)
    return w + hi * (1 - w)
