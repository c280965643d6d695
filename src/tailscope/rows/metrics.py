"""One row of the details table from one spectrum and its fit (weightwatcher's definitions).

Differences from weightwatcher, on purpose: a failed fit gives NaN (not -1) in the fit columns,
status 'failed' with a `reason`, and no 'over-trained' warning (weightwatcher labels its -1
placeholder alpha 'over-trained').
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tailscope.fit.powerlaw import PowerLawFit
from tailscope.spectrum.rank import weak_rank_loss
from tailscope.spectrum.routes import EPS64, Spectrum

OVER_TRAINED, UNDER_TRAINED = "over-trained", "under-trained"
ALPHA_LOW, ALPHA_HIGH = 2.0, 6.0
ENTROPY_EPSILON = 1e-10  # weightwatcher's EPSILON in matrix_entropy

# weightwatcher 0.7.7's columns in the order we print them, then ours
COLUMNS = (
    "layer_id", "name", "longname", "layer_type", "role", "layer", "expert", "M", "N", "Q",
    "num_evals", "rf", "alpha", "alpha_weighted", "D", "xmin", "xmax", "sigma", "num_pl_spikes",
    "lambda_max", "sv_max", "sv_min", "log_norm", "norm", "log_spectral_norm", "spectral_norm",
    "log_alpha_norm", "stable_rank", "entropy", "matrix_rank", "rank_loss", "weak_rank_loss",
    "has_esd", "status", "warning", "reason",
)
# diagnostic columns (present only when their option is on), ordered after the fit
# columns and before has_esd/status
DIAGNOSTIC_COLUMNS = (
    "raw_alpha", "num_fingers", "alpha_lo", "alpha_hi", "dk_pvalue", "dk_count",
    "detX_num", "detX_val", "detX_val_rescaled", "delta_lambda", "delta_log10_lambda",
    "num_spikes", "mp_softrank", "bulk_max", "bulk_min", "sigma_mp", "W_scale",
    "rand_distance", "max_rand_eval", "num_traps", "rand_mp_edge", "rand_num_spikes", "rand_mp_softrank",
    "rand_bulk_max", "rand_bulk_min", "rand_sigma_mp", "rand_W_scale",
    "tpl_alpha", "tpl_lambda", "llr_pl_tpl", "p_pl_tpl", "llr_pl_lognormal", "p_pl_lognormal",
    "alpha_farms", "alpha_hill",
)


def warning_for(alpha: float) -> str:
    if not math.isfinite(alpha):
        return ""
    if alpha < ALPHA_LOW:
        return OVER_TRAINED
    return UNDER_TRAINED if alpha > ALPHA_HIGH else ""


def matrix_rank(sv: np.ndarray, n: int) -> int:
    """np.linalg.matrix_rank's rule on given singular values: count of sv > sv_max * N * eps."""
    return int(np.count_nonzero(sv > sv.max() * n * EPS64)) if sv.size else 0


def spectral_entropy(evals: np.ndarray, n: int) -> float:
    """Normalized entropy of p = lambda / sum(lambda), divided by log(matrix rank)."""
    total = evals.sum()
    if total <= 0:
        return float("nan")
    p = evals / total + ENTROPY_EPSILON
    rank = matrix_rank(np.sqrt(evals), n) + ENTROPY_EPSILON
    return float(-np.sum(p * np.log(p)) / np.log(rank))


def norm_metrics(spec: Spectrum, alpha: float) -> dict[str, Any]:
    """Columns that depend only on the eigenvalues (and alpha)."""
    evals = spec.evals
    norm = float(evals.sum())
    lam_max = float(evals[-1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_spec = float(np.log10(lam_max)) if lam_max > 0 else float("nan")
        log_alpha_norm = float(np.log10(np.sum(evals**alpha))) if math.isfinite(alpha) else float("nan")
    return {
        "lambda_max": lam_max, "norm": norm, "log_norm": float(np.log10(norm)) if norm > 0 else float("nan"),
        "spectral_norm": lam_max, "log_spectral_norm": log_spec,
        "alpha_weighted": alpha * log_spec, "log_alpha_norm": log_alpha_norm,
        "stable_rank": norm / lam_max if lam_max > 0 else float("nan"),
        "entropy": spectral_entropy(evals, spec.N), "matrix_rank": matrix_rank(np.sqrt(evals), spec.N),
    }


def spectrum_columns(spec: Spectrum, fit: PowerLawFit, tolerance: float) -> dict[str, Any]:
    """Every numeric column of a row."""
    evals = spec.evals
    ww_weak_rank_loss = int(np.count_nonzero(evals < tolerance))
    row: dict[str, Any] = {
        "has_esd": True, "num_evals": int(evals.size), "sv_max": spec.sv_max, "sv_min": spec.sv_min,
        "rank_loss": spec.rank_loss, "weak_rank_loss": ww_weak_rank_loss,
        # weightwatcher's values (its eps64 rank tolerance, absolute weak-rank tolerance) for the
        # compat facade; the plain columns use `tailscope.spectrum.rank`'s precision-aware rules
        "ww_rank_loss": spec.rank_loss, "ww_weak_rank_loss": ww_weak_rank_loss,
        "alpha": fit.alpha, "xmin": fit.xmin, "xmax": fit.xmax, "D": fit.D, "sigma": fit.sigma,
        "num_pl_spikes": int(np.count_nonzero(evals >= fit.xmin)) if fit.ok else 0,
        "status": fit.status, "warning": warning_for(fit.alpha), "reason": fit.reason,
    }
    row.update(norm_metrics(spec, fit.alpha))
    row["ww_matrix_rank"] = row["matrix_rank"]
    if spec.rank is not None:
        row.update(matrix_rank=spec.rank, rank_loss=spec.rank_deficit, weak_rank_loss=weak_rank_loss(evals, tolerance))
    return row
