"""Correlation traps of one matrix, and their replacement by random components.

A correlation trap is a spike of the *randomized* ESD: shuffle the entries of W (the permutation
`analyze(randomize=True)` uses, ``np.random.default_rng((seed, layer_id))``), and an eigenvalue of
the shuffled matrix's W_s^T W_s above the Marchenko-Pastur edge s2 (sqrt N + sqrt M)^2 plus
4 Tracy-Widom widths (s2 = the entry variance; `fit.rmt.count_traps`) is one. Shuffling destroys
every correlation between entries, so what survives it is carried by the entries themselves: a
few huge entries (each one a spike wherever it lands) or a nonzero mean (the rank-one mean 1 1^T
is invariant under shuffling).

Identification (weightwatcher's newest ``analyze_traps`` / ``remove_traps`` follow the same
route; 0.7.7's ``SVDSharpness`` instead removed the top-k singular components of W itself, which
in a trained matrix are its learned correlations, not the traps):

1. each trap is the rank-one component T_s = sigma u v^T of the shuffled matrix W_s at that
   spike (sigma^2 the spike eigenvalue, u, v its singular vectors);
2. un-shuffling its entries puts it back in W's frame, T = P^-1(T_s): the part of W that makes
   the spike (a huge entry and the little around it, or the mean);
3. the singular direction of W it belongs to is reported as the right singular vector of W with
   the largest squared overlap with T's top right singular vector (``w_mode``, ``overlap``);
4. W' = W - sum_k T_k + R, with R zero-mean i.i.d. Gaussian whose variance is the summed entry
   variance of the T_k: each trap's energy returns to the bulk as noise, so ||W'||_F ~ ||W||_F.
   (weightwatcher's replacement also restores each T_k's entry mean; a mean is itself a trap,
   so here it is not restored.)

Removal is checked with a fresh shuffle of W': its trap count and the KS distance between its ESD
and the MP law of its own entry variance (``ks_before`` / ``ks_after``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tailscope.fit.rmt import TRAP_RELATIVE_FLOOR, TRAP_TW_UNITS, bulk_edge, mp_density, mp_edges, tracy_widom_width
from tailscope.rows.diagnostics import entry_variance


@dataclass(frozen=True)
class Trap:
    """One spike of the shuffled ESD and where it sits in W."""

    eigenvalue: float  # sigma^2 of the shuffled matrix at the spike
    cut: float  # MP edge + 4 Tracy-Widom widths it exceeded
    frob: float  # ||T||_F, the energy moved back to the bulk
    w_mode: int  # index (0 = largest) of W's singular direction T overlaps most
    overlap: float  # squared cosine between T's and W's right singular vectors there
    w_sigma: float  # W's singular value at w_mode


@dataclass(frozen=True)
class TrapRemoval:
    """A matrix with its traps replaced (``matrix`` None when it has none)."""

    matrix: np.ndarray | None
    traps: list[Trap] = field(default_factory=list)
    traps_after: int = 0
    ks_before: float = float("nan")
    ks_after: float = float("nan")
    rel_change: float = 0.0  # ||W' - W||_F / ||W||_F


def permutation(size: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """The entry order `analyze(randomize=True)` gives a matrix: W_s.flat = W.flat[perm].

    Shuffling the index array with the same generator state moves the same positions as shuffling
    the values in place (`diagnostics.shuffled_eigenvalues`).
    """
    perm = np.arange(size)
    np.random.default_rng(seed).shuffle(perm)
    return perm


def trap_cut(N: int, M: int, s2: float, top: float) -> float:
    """The eigenvalue above which a shuffled spike is a trap (`fit.rmt.count_traps`' rule)."""
    return max(bulk_edge(N, M, s2) + TRAP_TW_UNITS * tracy_widom_width(N, M, s2), TRAP_RELATIVE_FLOOR * top)


def _tall(W: np.ndarray) -> np.ndarray:
    return W if W.shape[0] >= W.shape[1] else W.T


def _eigh_gram(W: np.ndarray, vectors: bool = True, top: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Descending eigenvalues (and eigenvectors) of X^T X for X = W oriented tall; `top` only the largest ones.

    LAPACK's divide-and-conquer solver on one thread: numpy's default eigh took 6.6 s for a 576 x 576
    Gram on two shared cores where this takes 0.1 s (threads spinning against the other load)."""
    from scipy.linalg import eigh
    from threadpoolctl import threadpool_limits

    X = _tall(W)
    gram = X.T @ X
    subset = None if top is None else [gram.shape[0] - top, gram.shape[0] - 1]
    with threadpool_limits(1):
        if not vectors:
            return np.clip(eigh(gram, eigvals_only=True, driver="evd")[::-1], 0.0, None), None
        evals, V = eigh(gram, driver="evd" if subset is None else "evr", subset_by_index=subset)
    return np.clip(evals[::-1], 0.0, None), V[:, ::-1]


def shuffled_traps(W: np.ndarray, seed: int | tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray], float, np.ndarray]:
    """(permutation, trap components T_k in W's frame, the cut, the shuffled ESD descending)."""
    W = np.asarray(W, dtype=np.float64)
    perm = permutation(W.size, seed)
    Ws = W.ravel()[perm].reshape(W.shape)
    evals, _ = _eigh_gram(Ws, vectors=False)
    cut = trap_cut(*W.shape, entry_variance(W), float(evals[0]) if evals.size else 0.0)
    n_traps = int(np.count_nonzero(evals > cut))
    if n_traps == 0:
        return perm, [], cut, evals
    _, V = _eigh_gram(Ws, top=n_traps)
    X = _tall(Ws)
    comps = []
    for k in range(n_traps):
        v = V[:, k]
        Ts = np.outer(X @ v, v)  # sigma u v^T, tall orientation
        Ts = Ts if Ws.shape[0] >= Ws.shape[1] else Ts.T
        T = np.empty(W.size)
        T[perm] = Ts.ravel()
        comps.append(T.reshape(W.shape))
    return perm, comps, cut, evals


def mp_ks_distance(evals: np.ndarray, N: int, M: int, s2: float) -> float:
    """Kolmogorov-Smirnov distance between the eigenvalues of W^T W and the MP law of an N x M
    matrix of i.i.d. entries of variance s2 (Q = N / M >= 1 after orienting; no mass at zero)."""
    N, M = max(N, M), min(N, M)
    x = np.sort(np.asarray(evals, dtype=np.float64)) / N
    lo, hi = mp_edges(N / M, s2)
    grid = np.linspace(lo, hi, 20001)
    dens = mp_density(grid, N / M, s2)
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    model = np.interp(x, grid, cdf, left=0.0, right=1.0)
    n = x.size
    upper, lower = np.arange(1, n + 1) / n, np.arange(n) / n
    return float(max(np.max(upper - model), np.max(model - lower)))


def remove_matrix_traps(W: np.ndarray, seed: tuple[int, ...]) -> TrapRemoval:
    """W with each correlation trap replaced by a random component of the same energy (float64)."""
    W = np.asarray(W, dtype=np.float64)
    perm, comps, cut, rand_evals = shuffled_traps(W, seed)
    s2 = entry_variance(W)
    ks_before = mp_ks_distance(rand_evals, *W.shape, s2) if s2 > 0 else float("nan")
    if not comps:
        return TrapRemoval(None, ks_before=ks_before, ks_after=ks_before)
    w_evals, w_vecs = _eigh_gram(W)
    traps = [_describe(T, float(rand_evals[k]), cut, w_evals, w_vecs) for k, T in enumerate(comps)]
    variance = sum(float(np.var(T)) for T in comps)
    noise = np.random.default_rng((*seed, 2)).standard_normal(W.shape) * np.sqrt(variance)
    new = W - np.sum(comps, axis=0) + noise
    after_perm_seed = (*seed, 1)
    _, after, _, after_evals = shuffled_traps(new, after_perm_seed)
    ks_after = mp_ks_distance(after_evals, *W.shape, entry_variance(new))
    total = float(np.linalg.norm(W))
    rel = float(np.linalg.norm(new - W)) / total if total > 0 else 0.0
    return TrapRemoval(new, traps, len(after), ks_before, ks_after, rel)


def _describe(T: np.ndarray, eigenvalue: float, cut: float, w_evals: np.ndarray, w_vecs: np.ndarray) -> Trap:
    """Where trap component T sits among W's singular directions (right side: the short one)."""
    _, t_vecs = _eigh_gram(T, top=1)
    overlaps = (w_vecs.T @ t_vecs[:, 0]) ** 2
    mode = int(np.argmax(overlaps))
    return Trap(eigenvalue, cut, float(np.linalg.norm(T)), mode, float(overlaps[mode]), float(np.sqrt(w_evals[mode])))
