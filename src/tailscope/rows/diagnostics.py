"""Optional diagnostic columns of a row: each option of `AnalysisConfig` adds its
columns, and only when it is on.

    fix_fingers='clip_xmax'  raw_alpha, num_fingers (alpha, xmin, ... are then the clipped fit's);
                             'dragon_kings' also peels off what the Dragon-King test flags
    detx=True                detX_num, detX_val, detX_val_rescaled, delta_lambda, delta_log10_lambda
    randomize=True           rand_distance, max_rand_eval, num_traps, rand_mp_edge, and the MP fit
                             of the shuffled spectrum: rand_num_spikes, rand_mp_softrank,
                             rand_bulk_max, rand_bulk_min, rand_sigma_mp, rand_W_scale
    mp_fit=True              num_spikes, mp_softrank, bulk_max, bulk_min, sigma_mp, W_scale
    fit='TPL'                tpl_alpha, tpl_lambda, llr_pl_tpl, p_pl_tpl, llr_pl_lognormal, p_pl_lognormal
    dragon_kings=True        dk_pvalue, dk_count
    bootstrap=N              alpha_lo, alpha_hi
    farms=True               alpha_farms (fixed-aspect-ratio windows, `tailscope.rows.farms`)
    hill='median'|'peak'     alpha_hill (PL_Alpha_Hill, `tailscope.fit.hill`)

The mathematics lives in `tailscope.fit` (which never sees a matrix); this module holds the only
step that needs the matrices again: the spectrum of W with its entries shuffled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tailscope.config import AnalysisConfig
from tailscope.fit.bootstrap import bootstrap_alpha
from tailscope.fit.degenerate import checked
from tailscope.fit.detx import detx
from tailscope.fit.dragon import dragon_kings
from tailscope.fit.fingers import fit_clipped, fit_dragon_kings
from tailscope.fit.hill import hill_alpha
from tailscope.fit.mp import mp_fit
from tailscope.fit.powerlaw import PowerLawFit, fit_power_law
from tailscope.fit.rmt import bulk_edge, count_traps, jensen_shannon_distance
from tailscope.fit.tpl import compare_tails
from tailscope.rows.farms import Windows, farms_eigenvalues
from tailscope.spectrum.matrices import tall
from tailscope.spectrum.routes import Spectrum, compute_spectrum

NAN = float("nan")

def primary_fit(evals: np.ndarray, config: AnalysisConfig) -> tuple[PowerLawFit, dict[str, Any]]:
    """The power-law fit of the row (clipped of its fingers when asked) and the finger columns;
    a spectrum with no resolvable tail gets a 'degenerate' fit (`tailscope.fit.degenerate`) and no fingers."""
    raw = checked(evals, fit_power_law(evals, thresh=config.evals_thresh), config.evals_thresh)
    if not raw.ok:
        return raw, ({"raw_alpha": raw.alpha, "num_fingers": 0} if config.fix_fingers is not None else {})
    if config.fix_fingers is not None:
        if config.fix_fingers == "clip_xmax":
            clipped = fit_clipped(evals, thresh=config.evals_thresh, max_fingers=config.max_fingers)
        else:
            clipped = fit_dragon_kings(evals, thresh=config.evals_thresh, max_fingers=config.max_fingers,
                                       confidence=config.confidence)
        fit = checked(evals, clipped.fit, config.evals_thresh)
        return fit, {"raw_alpha": clipped.raw.alpha, "num_fingers": clipped.num_fingers if fit.ok else 0}
    return raw, {}


def fitted_tail(evals: np.ndarray, fit: PowerLawFit) -> np.ndarray:
    """The eigenvalues the fit used above xmin (fingers removed by fix_fingers stay out)."""
    return evals[(evals >= fit.xmin) & (evals <= fit.xmax)]


def detx_columns(evals: np.ndarray, fit: PowerLawFit) -> dict[str, Any]:
    """detX tail and its gap to the power-law xmin: delta_lambda = detX_val - xmin and
    delta_log10_lambda = log10(detX_val / xmin) (positive when the detX tail starts above xmin)."""
    with np.errstate(divide="ignore"):
        d = detx(evals)
    ok = fit.ok and d.num > 0
    return {
        "detX_num": d.num, "detX_val": d.value, "detX_val_rescaled": d.value_rescaled,
        "delta_lambda": d.value - fit.xmin if ok else NAN,
        "delta_log10_lambda": math.log10(d.value / fit.xmin) if ok and d.value > 0 else NAN,
    }


def mp_columns(evals: np.ndarray, N: int, M: int, prefix: str = "") -> dict[str, Any]:
    """weightwatcher's MP-fit columns; `prefix='rand_'` names those of the shuffled spectrum."""
    mp = mp_fit(evals, N, M)
    cols = {"num_spikes": mp.num_spikes, "mp_softrank": mp.softrank, "bulk_max": mp.bulk_max,
            "bulk_min": mp.bulk_min, "sigma_mp": mp.sigma, "W_scale": mp.w_scale}
    return {prefix + k: v for k, v in cols.items()}


def shuffled_eigenvalues(mats: list[np.ndarray], seed: int | tuple[int, ...], device: str = "cpu") -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """Pooled ascending eigenvalues of every matrix with its entries shuffled (one permutation per
    matrix from ``np.random.default_rng(seed)``), and per matrix (its eigenvalues, entry variance)."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in mats:
        shuffled = np.array(w, order="C")  # the one copy; shuffled in place
        rng.shuffle(shuffled.reshape(-1))
        evals = compute_spectrum([shuffled], shuffled.shape[0], device).evals
        parts.append((evals, entry_variance(w)))
    return np.sort(np.concatenate([p[0] for p in parts])), parts


def entry_variance(w: np.ndarray, block: int = 1 << 18) -> float:
    """np.var(w, dtype=float64) (two passes, float64) in row blocks of about `block` entries (2 MiB
    in float64, cache-sized): no float64 copy of all of W (0.02 s instead of 0.08-0.2 s for a
    30522 x 384 embedding). Blocks were 4096 rows, which for a 4096 x 14336 matrix is the whole
    matrix: a 470 MB temporary, 89 ms against 49 ms, and ~0.5 s per matrix in a whole randomized
    run of the Mistral-shaped benchmark, where fresh pages had to be faulted in each time."""
    mean = float(w.sum(dtype=np.float64)) / w.size
    total = 0.0
    rows = max(1, block // max(1, w.shape[1]))
    for start in range(0, w.shape[0], rows):
        d = np.asarray(w[start : start + rows], dtype=np.float64) - mean
        total += float(np.vdot(d, d))
    return total / w.size


def randomize_columns(mats: list[np.ndarray], spec: Spectrum, seed: tuple[int, ...], device: str) -> dict[str, Any]:
    """rand_distance: Jensen-Shannon distance between the sorted, sum-normalized eigenvalue vectors
    of W and shuffled W; num_traps: shuffled eigenvalues beyond each matrix's MP edge plus 4
    Tracy-Widom widths (`fit.rmt.count_traps`); rand_mp_edge: the largest MP edge
    s2 * (sqrt(N) + sqrt(M))^2 of the shuffled matrices (s2 the entry variance)."""
    rand, parts = shuffled_eigenvalues(mats, seed, device)
    shapes = [w.shape for w in mats]
    n_rows, n_cols = shapes[0]
    return {
        "rand_distance": jensen_shannon_distance(spec.evals, rand), "max_rand_eval": float(rand[-1]),
        "num_traps": sum(count_traps(ev, n, m, s2) for (ev, s2), (n, m) in zip(parts, shapes)),
        "rand_mp_edge": max(bulk_edge(n, m, s2) for (_, s2), (n, m) in zip(parts, shapes)),
        **mp_columns(rand, n_rows, n_cols, prefix="rand_"),
    }


def tail_columns(evals: np.ndarray, fit: PowerLawFit, config: AnalysisConfig) -> dict[str, Any]:
    """Columns that test or bound the power-law fit of the tail (TPL, Dragon Kings, bootstrap).

    TPL uses the eigenvalues the fit used (xmin..xmax, so fingers clipped by fix_fingers stay
    out); the bootstrap resamples every eigenvalue the scan saw (above the threshold, up to xmax)
    and re-chooses xmin each time; the Dragon-King test uses every eigenvalue >= xmin, since the
    largest are what it tests, under the row's alpha (the clipped one with fix_fingers)."""
    cols: dict[str, Any] = {}
    tail = fitted_tail(evals, fit) if fit.ok else np.empty(0)
    if config.fit == "TPL":
        names = ("tpl_alpha", "tpl_lambda", "llr_pl_tpl", "p_pl_tpl", "llr_pl_lognormal", "p_pl_lognormal")
        cols.update(dict.fromkeys(names, NAN))
        if tail.size >= 3:
            c = compare_tails(tail, fit.xmin, fit.alpha)
            cols.update({n: getattr(c, n) for n in names})
    if config.dragon_kings:
        dk = dragon_kings(evals, fit.xmin, fit.alpha, confidence=config.confidence) if fit.ok else None
        cols.update(dk_pvalue=dk.pvalue if dk else NAN, dk_count=dk.count if dk else 0)
    if config.bootstrap:
        lo, hi = NAN, NAN
        if fit.ok:
            seen = evals[(evals > config.evals_thresh) & (evals <= fit.xmax)]
            lo, hi = bootstrap_alpha(seen, n_boot=config.bootstrap, confidence=config.confidence, seed=config.seed)
        cols.update(alpha_lo=lo, alpha_hi=hi)
    return cols


def optional_columns(mats: list[np.ndarray], spec: Spectrum, fit: PowerLawFit, row: dict[str, Any],
                     config: AnalysisConfig, device: str) -> dict[str, Any]:
    """Every diagnostic column the config asks for (fingers come with `primary_fit`)."""
    cols: dict[str, Any] = {}
    if config.detx:
        cols.update(detx_columns(spec.evals, fit))
    if config.mp_fit:
        cols.update(mp_columns(spec.evals, int(row["N"]), int(row["M"])))
    if config.randomize and mats:
        cols.update(randomize_columns(mats, spec, (config.seed, int(row["layer_id"])), device))
    cols.update(tail_columns(spec.evals, fit, config))
    cols.update(shape_columns(mats, spec, config, device))
    return cols


def shape_columns(mats: list[np.ndarray], spec: Spectrum, config: AnalysisConfig, device: str) -> dict[str, Any]:
    """alpha_farms (the fit `farms_fit` of the pooled window ESD; NaN without the matrices, as for
    a LoRA update, or when that fit fails) and alpha_hill (of the layer's own eigenvalues)."""
    cols: dict[str, Any] = {}
    if config.farms:
        alpha = NAN
        if mats:
            windows = Windows(config.farms_rows, float(config.farms_q), config.farms_per_dim)
            alpha = farms_alpha(farms_eigenvalues([tall(w) for w in mats], windows, device), config)
        cols["alpha_farms"] = alpha
    if config.hill is not None:
        cols["alpha_hill"] = hill_alpha(spec.evals, config.hill)
    return cols


def farms_alpha(pooled: np.ndarray, config: AnalysisConfig) -> float:
    """alpha of the pooled FARMS ESD by `config.farms_fit` (NaN when the fit fails)."""
    if config.farms_fit != "ks":
        return hill_alpha(pooled, config.farms_fit)
    fit = fit_power_law(pooled, thresh=config.evals_thresh)
    return fit.alpha if fit.ok else NAN
