"""Alternatives to the power law on the same tail (x >= xmin, continuous), and the likelihood-ratio
tests between them, with the definitions of the `powerlaw` package (Alstott et al. 2014).

    power law (PL)            p(x) = (alpha - 1) / xmin * (x / xmin)^(-alpha)
    truncated PL (TPL)        p(x) = x^(-alpha) exp(-lam x) / Z,  Z = int_xmin^inf t^(-alpha) e^(-lam t) dt
    lognormal (truncated)     p(x) = exp(-(log x - mu)^2 / (2 s^2)) / (x * s * sqrt(pi/2) * erfc((log xmin - mu) / (s sqrt 2)))

TPL and lognormal are fitted by maximum likelihood (Nelder-Mead); the PL alpha is the closed form
1 + n / sum log(x / xmin). The test of two fits with per-point log-likelihoods l1, l2 is Vuong's:

    R = sum(l1 - l2)   (> 0 favours the first)
    p = erfc(|R| / sqrt(2 n var(l1 - l2)))          non-nested (PL vs lognormal)
    p = chi2.sf(|2R|, 1)                            nested (PL inside TPL)

p small means the sign of R is significant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_FLOOR = np.log(10.0**-307)  # powerlaw's replacement for log(0)
RECURRENCE_MAX_C = 10.0


@dataclass(frozen=True)
class TailComparison:
    tpl_alpha: float
    tpl_lambda: float  # exponential cutoff, 1 / eigenvalue units
    lognormal_mu: float
    lognormal_sigma: float
    llr_pl_tpl: float
    p_pl_tpl: float
    llr_pl_lognormal: float
    p_pl_lognormal: float


def pl_loglikelihoods(x: np.ndarray, xmin: float, alpha: float) -> np.ndarray:
    return np.log((alpha - 1.0) / xmin) - alpha * np.log(x / xmin)


def _expint_s(s: float, c: float) -> float:
    """Generalized exponential integral E_s(c) = int_1^inf t^(-s) e^(-c t) dt for c > 0 (any real s).

    E_s0 for s0 in (0, 1] from the incomplete gamma function, then the upward recurrence
    E_s = (e^(-c) - c E_(s-1)) / (s - 1); errors grow like c^k / k!, so it is used for c <= 10.
    """
    from scipy.special import exp1, gamma, gammaincc

    def base(s0: float) -> float:
        return float(exp1(c)) if s0 == 1.0 else float(c ** (s0 - 1) * gammaincc(1 - s0, c) * gamma(1 - s0))

    if s <= 1.0:
        return base(s)
    s0 = s - (np.ceil(s) - 1.0)
    value = base(s0)
    while s0 + 1.0 <= s + 1e-12:
        s0 += 1.0
        value = (np.exp(-c) - c * value) / (s0 - 1.0)
    return float(value)


def _log_tpl_norm(alpha: float, c: float) -> float:
    """log int_1^inf t^(-alpha) e^(-c t) dt (tail scaled by xmin; c = lam * xmin > 0)."""
    if c <= RECURRENCE_MAX_C:
        value = _expint_s(alpha, c)
        return float(np.log(value)) if value > 0 else float("inf")
    from scipy.integrate import quad

    # t = e^u, with e^(-c) factored out so that the integrand is 1 at u = 0
    with np.errstate(over="ignore"):
        val, _ = quad(lambda u: np.exp((1.0 - alpha) * u - c * np.expm1(u)), 0.0, np.inf, limit=200)
    return -c + float(np.log(val)) if val > 0 else float("inf")


def tpl_loglikelihoods(x: np.ndarray, xmin: float, alpha: float, lam: float) -> np.ndarray:
    y, c = x / xmin, lam * xmin
    if c <= 0:
        return pl_loglikelihoods(x, xmin, alpha) if alpha > 1 else np.full(x.size, -np.inf)
    return -alpha * np.log(y) - c * y - _log_tpl_norm(alpha, c) - np.log(xmin)


def lognormal_loglikelihoods(x: np.ndarray, xmin: float, mu: float, s: float) -> np.ndarray:
    from scipy.special import log_ndtr

    lx = np.log(x)
    # log of s * sqrt(pi/2) * erfc((log xmin - mu)/(s sqrt 2)) = log(s sqrt(2 pi)) + log Phi((mu - log xmin)/s)
    log_norm = np.log(s * np.sqrt(2 * np.pi)) + log_ndtr((mu - np.log(xmin)) / s)
    return -lx - (lx - mu) ** 2 / (2 * s**2) - log_norm


def _minimize(cost, starts: list[np.ndarray]) -> np.ndarray:  # noqa: ANN001
    from scipy.optimize import minimize

    best = None
    for x0 in starts:
        res = minimize(cost, x0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    return best.x


def fit_tpl(x: np.ndarray, xmin: float, alpha_pl: float) -> tuple[float, float]:
    """MLE (alpha, lam) of the truncated power law; lam = exp(v) / xmin keeps lam > 0."""
    y = x / xmin

    def cost(p: np.ndarray) -> float:
        alpha, c = p[0], float(np.exp(p[1]))
        value = -np.sum(-alpha * np.log(y) - c * y) + y.size * _log_tpl_norm(alpha, c)
        return float(value) if np.isfinite(value) else 1e300

    starts = [np.array([alpha_pl, np.log(1e-3 / y.max())]), np.array([alpha_pl - 0.5, np.log(1.0 / y.mean())])]
    alpha, v = _minimize(cost, starts)
    return float(alpha), float(np.exp(v) / xmin)


def fit_lognormal(x: np.ndarray, xmin: float) -> tuple[float, float]:
    """MLE (mu, s) of the lognormal truncated at xmin; s = exp(v)."""
    lx = np.log(x)

    def cost(p: np.ndarray) -> float:
        value = -np.sum(lognormal_loglikelihoods(x, xmin, p[0], float(np.exp(p[1]))))
        return float(value) if np.isfinite(value) else 1e300

    mu, v = _minimize(cost, [np.array([lx.mean(), np.log(max(lx.std(), 1e-3))])])
    return float(mu), float(np.exp(v))


def loglikelihood_ratio(l1: np.ndarray, l2: np.ndarray, nested: bool) -> tuple[float, float]:
    """Vuong's R and p (the `powerlaw` package's definition)."""
    from scipy.special import erfc
    from scipy.stats import chi2

    l1 = np.where(np.isneginf(l1), LOG_FLOOR, l1)
    l2 = np.where(np.isneginf(l2), LOG_FLOOR, l2)
    d = l1 - l2
    R = float(np.sum(d))
    if nested:
        return R, float(chi2.sf(abs(2 * R), 1))
    var = float(np.mean((d - d.mean()) ** 2))
    return R, float(erfc(abs(R) / np.sqrt(2 * d.size * var))) if var > 0 else 1.0


def compare_tails(evals: np.ndarray, xmin: float, alpha: float) -> TailComparison:
    """TPL and lognormal fits of the tail evals >= xmin and their tests against the PL of `alpha`."""
    x = np.asarray(evals, dtype=np.float64)
    x = x[x >= xmin]
    t_alpha, lam = fit_tpl(x, xmin, alpha)
    mu, s = fit_lognormal(x, xmin)
    l_pl = pl_loglikelihoods(x, xmin, alpha)
    r_t, p_t = loglikelihood_ratio(l_pl, tpl_loglikelihoods(x, xmin, t_alpha, lam), nested=True)
    r_l, p_l = loglikelihood_ratio(l_pl, lognormal_loglikelihoods(x, xmin, mu, s), nested=False)
    return TailComparison(t_alpha, lam, mu, s, r_t, p_t, r_l, p_l)
