"""Per-layer figures of one ESD (eigenvalues of W^T W, unnormalized, as in the details table).

Each function takes the eigenvalues (any order) and, where it draws a fit, the `PowerLawFit` of
them (fitted here with `fit_power_law` when not given), draws into ``ax`` (a new figure when None)
and returns the Axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tailscope.errors import ConfigError
from tailscope.fit.powerlaw import PowerLawFit, fit_power_law, ks_curve
from tailscope.fit.rmt import bulk_edge, mp_density
from tailscope.plots._axes import axes_or_new, title

ESD_COLOR, FIT_COLOR, XMIN_COLOR, DETX_COLOR, MP_COLOR = "C0", "black", "red", "purple", "C1"
OUTLIER_FACTOR = 10.0  # the linear ESD's x-range stops at this multiple of the 99th percentile
TRAP_FACTOR = 1.5  # x-range stops at this multiple of the MP edge when shuffled eigenvalues go far beyond


def _evals(evals: Any) -> np.ndarray:
    arr = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    if arr.size < 2 or not np.isfinite(arr).all():
        raise ConfigError(f"Expected `evals` to be at least 2 finite eigenvalues, but got {arr.size} ({arr[:3]}...)")
    return arr


def _legend(ax: Any, ncol: int = 2) -> None:
    """Legend under the axes: it never covers a bar or a line, whatever the spectrum's shape."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=ncol, frameon=False)


def auto_bins(n: int) -> int:
    """About 8 eigenvalues per bin, between 20 and 100 bins: fewer gaps on small spectra."""
    return int(min(100, max(20, n // 8)))


def _hidden_note(ax: Any, hidden: np.ndarray, limit: float) -> None:
    if hidden.size:
        ax.text(0.98, 0.96, f"{hidden.size} eigenvalue(s)\nbeyond {limit:.3g}\n(max {hidden.max():.3g})\nnot shown",
                transform=ax.transAxes, ha="right", va="top", fontsize=8, color="darkred")


def plot_esd(evals: Any, ax: Any = None, *, bins: int | None = None, name: str | None = None) -> Any:
    """Histogram (density) of the eigenvalues on linear axes: the bulk and how far the tail reaches.

    Eigenvalues beyond 10x the 99th percentile (a lone outlier that would squash the whole ESD into
    one bin) are left out of the x-range and counted on the plot; the density stays that of all.
    """
    x = _evals(evals)
    ax = axes_or_new(ax)
    limit = OUTLIER_FACTOR * float(np.quantile(x, 0.99))
    far = x > limit if limit > 0 else np.zeros(x.size, dtype=bool)
    shown = x[~far]
    nbins = bins or auto_bins(shown.size)
    lower, upper = float(shown[0]), (limit if far.any() else float(shown[-1]))
    if upper <= lower:  # every eigenvalue equal: one bar around it
        pad = 0.1 * abs(lower) or 1.0
        lower, upper = lower - pad, upper + pad
    width = (upper - lower) / nbins
    ax.hist(shown, bins=np.linspace(lower, upper, nbins + 1), weights=np.full(shown.size, 1.0 / (x.size * width)),
            color=ESD_COLOR, alpha=0.8, histtype="stepfilled")
    _hidden_note(ax, x[far], limit)
    ax.set_xlabel(r"eigenvalue $\lambda$ of $W^TW$")
    ax.set_ylabel("density")
    title(ax, f"ESD ({x.size} eigenvalues)", name)
    ax.grid(alpha=0.3)
    return ax


def _power_law_density(fit: PowerLawFit, share: float) -> tuple[np.ndarray, np.ndarray]:
    """The fitted tail density p(x) = share * (alpha-1)/xmin * (x/xmin)^-alpha on [xmin, xmax]."""
    xs = np.geomspace(fit.xmin, fit.xmax, 100)
    return xs, share * (fit.alpha - 1.0) / fit.xmin * (xs / fit.xmin) ** (-fit.alpha)


def plot_esd_loglog(
    evals: Any, fit: PowerLawFit | None = None, ax: Any = None, *, detx_value: float | None = None,
    bins: int | None = None, thresh: float = 1e-5, name: str | None = None,
) -> Any:
    """ESD on log-log axes (log-spaced bins) with the fitted power law (dashed) scaled to the tail's
    share of the eigenvalues, xmin (red) and, when given, the start of the detX tail (purple)."""
    x = _evals(evals)
    fit = fit if fit is not None else fit_power_law(x, thresh=thresh)
    pos = x[x > thresh]
    if pos.size == 0:
        raise ConfigError(f"Expected eigenvalues above {thresh:g} for a log-log ESD, but all {x.size} are below")
    ax = axes_or_new(ax)
    lo, hi = (pos[0], pos[-1]) if pos[0] < pos[-1] else (pos[0] / 1.5, pos[0] * 1.5)
    edges = np.geomspace(lo, hi, (bins or auto_bins(pos.size)) + 1)
    dens = ax.hist(pos, bins=edges, density=True, color=ESD_COLOR, alpha=0.6, histtype="stepfilled", label="ESD")[0]
    if fit.ok:
        share = fit.n_tail / pos.size
        xs, ys = _power_law_density(fit, share)
        ax.plot(xs, ys, "--", color=FIT_COLOR, lw=1.5, label=rf"power law $\alpha$={fit.alpha:.2f}, D={fit.D:.3f}")
        ax.axvline(fit.xmin, color=XMIN_COLOR, lw=1.2, label=f"xmin={fit.xmin:.3g} ({fit.n_tail} in tail)")
    if detx_value is not None and np.isfinite(detx_value):
        ax.axvline(detx_value, color=DETX_COLOR, lw=1.2, ls="-.", label=f"detX start={detx_value:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=float(dens[dens > 0].min()) / 3.0, top=float(dens.max()) * 3.0)  # a far outlier must not squash the ESD
    ax.set_xlabel(r"eigenvalue $\lambda$ of $W^TW$ (log)")
    ax.set_ylabel("density (log)")
    title(ax, "ESD, log-log" + ("" if fit.ok else f" (fit failed: {fit.reason})"), name)
    ax.grid(alpha=0.3, which="major")
    _legend(ax)
    return ax


def plot_ks_curve(
    evals: Any = None, fit: PowerLawFit | None = None, ax: Any = None, *, thresh: float = 1e-5, name: str | None = None,
) -> Any:
    """KS distance D of the power-law fit against each candidate xmin (the scan the fit minimizes),
    with the fitted alpha on a second axis: a flat, low valley around the chosen xmin (red) means a
    stable choice; several near-equal minima far apart mean alpha depends on an arbitrary xmin."""
    if fit is None:
        if evals is None:
            raise ConfigError("Expected `evals` or `fit` for the D-versus-xmin curve, but got neither")
        fit = fit_power_law(_evals(evals), thresh=thresh)
    if not fit.ok:
        raise ConfigError(f"Expected a successful power-law fit for the D-versus-xmin curve, but it failed: {fit.reason}")
    xmins, ds = ks_curve(fit)
    ax = axes_or_new(ax)
    ax.plot(xmins, ds, "-", color=ESD_COLOR, lw=1.2, label=r"$D_{KS}$")
    ax.axvline(fit.xmin, color=XMIN_COLOR, lw=1.2, label=f"chosen xmin={fit.xmin:.3g}, D={fit.D:.3f}")
    ax.set_xscale("log")
    ax.set_ylim(0, min(1.0, float(np.max(ds)) * 1.05) if ds.size else 1.0)
    ax.set_xlabel("candidate xmin (log)")
    ax.set_ylabel(r"KS distance $D$")
    keep = np.isfinite(fit.alphas) & (fit.alphas > 1.0) & (fit.Ds < 1.0)
    twin = ax.twinx()
    twin.plot(fit.xmins[keep], fit.alphas[keep], color="gray", lw=0.9, alpha=0.8)
    twin.set_ylim(1.0, max(2.0 * fit.alpha, 8.0))
    twin.set_ylabel(r"$\alpha$ at that xmin (gray)", color="gray")
    twin.tick_params(axis="y", colors="gray")
    title(ax, rf"$D_{{KS}}$ vs xmin ($\alpha$={fit.alpha:.2f})", name)
    ax.grid(alpha=0.3)
    _legend(ax, ncol=1)
    return ax


def plot_randomized_esd(
    rand_evals: Any, N: int, M: int, ax: Any = None, *, bins: int | None = None, name: str | None = None,
) -> Any:
    """ESD of W with its entries shuffled, against the Marchenko-Pastur density of an N x M
    i.i.d. matrix with the same entry variance s2 = mean(lambda) / N (unnormalized units: the MP law
    of W^T W / N, rescaled by N). Shuffled eigenvalues far beyond the MP edge lambda+ are
    correlation traps; when they reach past 1.5 lambda+ the x-range stops there and they are counted."""
    x = _evals(rand_evals)
    if not (isinstance(N, (int, np.integer)) and isinstance(M, (int, np.integer)) and N >= M >= 1):
        raise ConfigError(f"Expected ints N >= M >= 1 (the shape of W, long side first), but got N={N!r}, M={M!r}")
    ax = axes_or_new(ax)
    s2 = float(np.mean(x)) / N
    edge = bulk_edge(N, M, s2)
    far = x > TRAP_FACTOR * edge
    upper = TRAP_FACTOR * edge if far.any() else max(float(x[-1]), edge) * 1.05
    lower = min(float(x[0]), s2 * (np.sqrt(N) - np.sqrt(M)) ** 2)
    lower = 0.0 if lower < 0.2 * upper else lower - 0.05 * (upper - lower)  # zoom on a bulk far from 0
    shown = x[~far]
    nbins = bins or auto_bins(shown.size)
    width = (upper - lower) / nbins
    ax.hist(shown, bins=np.linspace(lower, upper, nbins + 1), weights=np.full(shown.size, 1.0 / (x.size * width)),
            color=ESD_COLOR, alpha=0.6, histtype="stepfilled", label="shuffled-W ESD")
    grid = np.linspace(lower, upper, 600)[1:]
    ax.plot(grid, mp_density(grid / N, N / M, s2) / N, color=MP_COLOR, lw=1.8, label=rf"Marchenko-Pastur, $\sigma^2$={s2:.3g}")
    ax.axvline(edge, color=MP_COLOR, ls="--", lw=1.0, label=rf"MP edge $\lambda_+$={edge:.3g}")
    _hidden_note(ax, x[far], TRAP_FACTOR * edge)
    ax.set_xlim(lower, upper)
    ax.set_xlabel(r"eigenvalue $\lambda$ of shuffled $W^TW$")
    ax.set_ylabel("density")
    title(ax, f"Randomized ESD vs Marchenko-Pastur (Q={N / M:.2f})", name)
    ax.grid(alpha=0.3)
    _legend(ax)
    return ax
