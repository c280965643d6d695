"""Which singular components of a matrix to keep, per smoothing method (weightwatcher 0.7.7's rules).

With W = U diag(s) V^T, s descending, the eigenvalues of W^T W are s^2. weightwatcher's
`SVDSmoothing` keeps the top k components, k chosen by the method:

- ``svd``:       k = int(percent * M)                       (M = min(N, M) = number of eigenvalues)
- ``detx``:      k = detX_num, the size of the TRACE-LOG tail (fit/detx.py)
- ``alpha_min``: k = num_pl_spikes, the eigenvalues >= the power-law xmin (fit/powerlaw.py)
- ``rmt``:       k = num_spikes, the eigenvalues above the fitted MP bulk edge + TW margin (fit/mp.py)

`SVDSharpness` (``sharpen``) removes the top k components instead, k = the spikes above the MP
bulk edge of the *element-shuffled* W (its ESD; weightwatcher shuffles, fits the MP law to the
shuffled ESD, and removes that many top components of the unshuffled W). The shuffle is seeded
here (`seed`); weightwatcher's is not.

A choice that keeps no component (k = 0) or removes none (sharpen with 0 spikes) leaves W
unchanged, as weightwatcher does ("Not smoothing ... ncomp=0"). One deliberate difference: when
weightwatcher's MP fit fails it counts -1 spikes and `rmt` then removes the top component; here
a failed fit leaves the matrix unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tailscope.fit.detx import detx
from tailscope.fit.mp import mp_fit
from tailscope.fit.powerlaw import fit_power_law


@dataclass(frozen=True)
class Choice:
    """Components start..stop-1 (in descending singular-value order) are kept."""

    start: int
    stop: int
    rank: int  # number of singular values, min(N, M)
    note: str = ""
    sharpen: bool = False  # the top components are removed (k = start)

    @property
    def kept(self) -> int:
        return self.stop - self.start

    @property
    def changes(self) -> bool:
        """weightwatcher rewrites W unless its k is 0: nothing kept, or nothing removed (sharpen)."""
        return self.kept > 0 and not (self.sharpen and self.start == 0)


def choose(sv: np.ndarray, shape: tuple[int, int], method: str, *, percent: float = 0.8,
           matrix: np.ndarray | None = None, seed: int = 0, evals_thresh: float = 1e-5) -> Choice:
    """The kept component range for singular values `sv` (descending) of a matrix of `shape`."""
    N, M = max(shape), min(shape)
    evals = np.sort(np.asarray(sv, dtype=np.float64) ** 2)
    if method == "svd":
        k = int(percent * M)
        return Choice(0, k, M, "all" if k == M else f"percent={percent:g}")
    if method == "detx":
        return Choice(0, detx(evals).num, M, "detX tail")
    if method == "alpha_min":
        fit = fit_power_law(evals, thresh=evals_thresh)
        if not fit.ok:
            return Choice(0, 0, M, f"power-law fit failed: {fit.reason}")
        return Choice(0, fit.n_tail, M, f"xmin={fit.xmin:.4g}")
    if method == "rmt":
        mp = mp_fit(evals, N, M)
        return Choice(0, mp.num_spikes, M, f"MP bulk edge={mp.bulk_max:.4g}")
    if method == "sharpen":
        if matrix is None:
            raise ValueError("sharpen needs the matrix itself (its shuffled ESD)")
        traps = shuffled_spikes(matrix, seed)
        return Choice(traps, M, M, f"{traps} spike(s) in the shuffled ESD", sharpen=True)
    raise ValueError(f"unknown smoothing method {method!r}")


def shuffled_spikes(matrix: np.ndarray, seed: int) -> int:
    """Spikes above the MP bulk of the ESD of W with its entries permuted (weightwatcher's traps)."""
    rng = np.random.default_rng(seed)
    flat = np.asarray(matrix, dtype=np.float64).ravel()
    shuffled = flat[rng.permutation(flat.size)].reshape(matrix.shape)
    evals = np.clip(np.linalg.eigvalsh(_gram(shuffled)), 0.0, None)
    return mp_fit(evals, max(matrix.shape), min(matrix.shape)).num_spikes


def _gram(W: np.ndarray) -> np.ndarray:
    """X^T X for X = W oriented tall (N >= M): the M x M matrix whose eigenvalues are the ESD."""
    X = W if W.shape[0] >= W.shape[1] else W.T
    return X.T @ X


def right_singular(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) and the matching singular vectors of the short side of W.

    From the symmetric eigenproblem of the M x M Gram matrix: one GEMM and one syevd, several
    times cheaper than a full SVD of the N x M matrix, and enough for a projection, because
    U_k S_k V_k^T = W V_k V_k^T needs only V_k.
    """
    evals, V = np.linalg.eigh(_gram(W))
    order = np.argsort(evals)[::-1]
    return np.sqrt(np.clip(evals[order], 0.0, None)), V[:, order]


def project(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """W restricted to the span of the columns of V on its short side (V V^T applied there)."""
    if W.shape[0] >= W.shape[1]:
        return (W @ V) @ V.T
    return V @ (V.T @ W)


@dataclass(frozen=True)
class Smoothed:
    """The result for one matrix: the new matrix (None when unchanged) and what the sidecar records."""

    matrix: np.ndarray | None
    choice: Choice
    frob_kept: float  # ||W_k||_F / ||W||_F
    rel_error: float  # ||W - W_k||_F / ||W||_F


def smooth_matrix(W: np.ndarray, method: str, *, percent: float = 0.8, seed: int = 0,
                  evals_thresh: float = 1e-5) -> Smoothed:
    """U_k S_k V_k^T of W in float64 for the components the method keeps."""
    W64 = np.asarray(W, dtype=np.float64)
    s, V = right_singular(W64)
    choice = choose(s, W64.shape, method, percent=percent, matrix=W64, seed=seed, evals_thresh=evals_thresh)
    total = float(np.sum(s**2))
    kept = float(np.sum(s[choice.start : choice.stop] ** 2))
    if not choice.changes or total <= 0:
        return Smoothed(None, choice, 1.0, 0.0)
    new = project(W64, V[:, choice.start : choice.stop])
    return Smoothed(new, choice, float(np.sqrt(kept / total)), float(np.sqrt(max(total - kept, 0.0) / total)))
