"""Eigenvalues of X = W^T W for each matrix, pooled and sorted ascending (float64).

Route (CPU, numpy/scipy): the Gram matrix in float64, accumulated over row blocks with one
SYRK each (so a bf16/fp32 matrix is never copied whole to float64), then the symmetric
divide-and-conquer eigensolver (syevd). That is the eigenvalues weightwatcher gets from a full
float64 SVD, at a fraction of the cost: SYRK is N*M^2 flops against ~4*N*M^2 + 8/3*M^3 for SVD.

fp32 Gram, off by default (FP32_GRAM = False, measured 2026-12-03). Every fp32 result must pass
the KS tie check below (`tailscope.fit.ties`), and almost none does: 4 of SmolLM2's 89 matrices
above the floor, 1 of 52 on the Mixtral-shaped benchmark. A redone matrix pays for its fp32
attempt and then the fp64 solve, so whole analyses got slower with the route on: MiniLM 1.3 s
against 1.2 s, SmolLM2 5.3 against 4.7, Mixtral-shaped 10.0 against 6.4, Mistral-shaped 94.9
against 70.6 (docs/science/shapes-and-precision.md). What follows is how the route works when it is
switched on, and the measurements it was chosen by before the check existed.

fp32 Gram (chosen by measurement, `python bench/bench_routes.py`, 2 cores, quiet, 13:15
UTC 2026-11-30): for a matrix stored in 32 bits or fewer (every checkpoint format: bf16, fp16,
fp32, dequantized GGUF) with M >= FP32_MIN_M and N >= FP32_MIN_Q * M, the Gram matrix is computed
by SSYRK and solved by ssyevd, eigenvalues promoted to float64:

    shape       gram64   gram32   svd64    svd32   gram32 top-50 rel err / alpha rel err
    1024x4096   0.10 s   0.06 s   0.31 s   0.18 s  6.2e-06 / 1.8e-07
    4096x4096   3.51 s   1.42 s   9.67 s   4.06 s  2.1e-05 / 4.2e-06
    4096x14336  4.71 s   1.91 s  15.68 s   7.53 s  2.1e-05 / 1.4e-06

and on one BLAS thread, as the executor's compute pool runs small matrices (`--threads 1
--shapes 192x576,384x1536,576x1536`, 14:20 UTC 2026-11-30):

    192x576     1.3 ms   0.9 ms   7.5 ms   4.0 ms  1.3e-06 / 1.6e-06
    384x1536    9.0 ms   5.2 ms  36.0 ms  19.8 ms  2.0e-06 / 1.7e-07
    576x1536   21.2 ms  11.5 ms  68.9 ms  36.8 ms  3.7e-06 / 9.9e-08

(FP32_MIN_M was 2048 from a run on a loaded machine, then 1024 while "below, the solve is a few
ms either way" was believed; but a model has many such matrices, and the few ms add up. At 256
whole analyses went from 0.26 to 0.23 s (MiniLM) and from 2.03 to 1.74-1.84 s (SmolLM2 GGUF)
once the fp32 eigensolve ran without the GIL (`ssyevd_eigenvalues`); alphas moved by at most
3.2e-6 and 4.8e-5, sv_min by 3.2e-5 and 1.1e-4, relative. Below M = 256 a solve is under a
millisecond and the gain is noise.)
So fp32 pays wherever the Gram work is not negligible: BLAS runs fp32 at twice the fp64 rate.
fp32 rounding leaves an absolute eigenvalue error of order eps32 * sqrt(M) * lambda_max
(measured on SmolLM2's 1536 x 576 MLP matrices: at most 3.5e-6 lambda_max), harmless for the
tail every fit uses but not for tiny eigenvalues (sv_min, rank counts): so the fp32 result is
kept only when every eigenvalue exceeds FP32_RELATIVE_FLOOR * lambda_max (a wide bulk, e.g. the
14336x4096 MLP matrices with Q=3.5, whose Marchenko-Pastur bulk starts near 0.09 lambda_max);
otherwise the matrix is redone in fp64, with the SVD fallback below. That redo is the price of
trying: 89 of SmolLM2's 90 MLP matrices keep their fp32 result; its 49152 x 576 token embedding
(lambda_min / lambda_max = 1.2e-4) and one MLP matrix are redone (the embedding's wasted fp32
attempt took 0.09 s in one run and 0.17 s in another, of a 1.8 s run).
Square matrices (q/o projections) go to fp64 directly: their bulk reaches 0, so fp32 would
nearly always be computed and then thrown away.

The Gram route's eigenvalues carry an absolute error of order eps64 * lambda_max (the
eigensolver's backward error; the Gram rounding is smaller in practice), so a tiny eigenvalue
loses relative accuracy. Nothing weightwatcher reports depends on those except sv_min and
matrix_rank / rank_loss: when a matrix's smallest Gram eigenvalue is under
`GRAM_RELATIVE_FLOOR * lambda_max` we recompute that matrix by SVD. Above the floor, sv_min is
within ~0.5 * eps64 / 1e-12 = 1.1e-4 relative even at that worst-case error, and the rank is
full (weightwatcher's rank tolerance, sv_max * N * eps, is ~1e-25 lambda_max in eigenvalues).
The floor was 1e-10 until measured: a Student-t 4096 x 4096 q_proj of the Mistral-shaped
benchmark has lambda_min / lambda_max = 2.7e-12; its Gram sv_min is within 2.0e-6 of the SVD's,
and the SVD took 9.2 s of a 42 s run, against ~3 s for the matrix's whole Gram route. (By
Edelman's law for sigma_min, a square Gaussian matrix at M = 4096 falls under 1e-10 with
probability ~8% and under 1e-12 with ~0.8%; heavier-tailed entries fall lower more often.)
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from tailscope.errors import TailscopeError
from tailscope.fit.ties import fit_is_fragile, fp32_error
from tailscope.spectrum.precision import GRAM_RELATIVE_FLOOR
from tailscope.spectrum.rank import matrix_rank, precision_eps

FP32_GRAM = False  # the fp32 Gram route below is off: with the KS tie check it was slower than fp64 on every checkpoint measured
FP32_MIN_M = 256  # fp32 Gram from this M up (measured, quiet: 1.8x at 576x1536 on one thread, 2.5x at 4096x4096)
THREADED_MIN_FLOPS = 1e8  # a Gram matrix with fewer N*M^2 flops runs on one BLAS thread (blas_threads)
FP32_THREADED_MIN_FLOPS = 1e10  # ... on the fp32 route, from this work up only (measured: blas_threads)
FP32_MIN_Q = 2  # ... and aspect ratio N/M from 2: a square matrix's bulk reaches down to 0
FP32_RELATIVE_FLOOR = 1e-3  # fp32 Gram kept only if every eigenvalue is above this * lambda_max
ROW_BLOCK = 4096
EPS64 = np.finfo(np.float64).eps


class NumericalError(TailscopeError):
    """A matrix that has no meaningful spectrum (NaN/Inf entries, ...)."""


@dataclass(frozen=True)
class Spectrum:
    """Pooled eigenvalues of one layer and the singular-value facts weightwatcher reports."""

    evals: np.ndarray  # ascending, float64
    sv_max: float
    sv_min: float  # weightwatcher: the largest of the per-slice smallest singular values
    rank_loss: int  # weightwatcher's rule (sv <= sv_max * N * eps64), kept for the compat facade
    N: int
    rank: int | None = None  # matrix rank at the precision the values carry (`tailscope.spectrum.rank`)
    rank_deficit: int | None = None  # eigenvalues minus that rank


def check_finite(w: np.ndarray) -> None:
    """Raise on NaN/Inf entries. A finite float64 sum proves every entry finite without a
    boolean copy of W; only a non-finite sum (a bad entry, or overflow) pays for the count."""
    with np.errstate(all="ignore"):  # inf - inf in the sum is the signal, not a warning
        total = w.sum(dtype=np.float64)
    if np.isfinite(total):
        return
    bad = int(np.size(w) - np.count_nonzero(np.isfinite(w)))
    if bad:
        raise NumericalError(f"{bad} NaN/Inf entries")


def gram(w: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """W^T W in `dtype` for a tall W (numpy's matmul runs SYRK for B^T B and, unlike scipy's f2py
    BLAS wrappers, releases the GIL, so pooled threads overlap). A W already in `dtype` is one
    SYRK call (14336 x 4096 fp32: 1.08 s, against 1.31 s in 4096-row blocks); otherwise row blocks
    are converted one at a time, so a bf16/fp32 matrix is never copied whole to float64."""
    if w.dtype == dtype:
        return w.T @ w
    first = np.asarray(w[:ROW_BLOCK], dtype=dtype)
    g = first.T @ first
    for start in range(ROW_BLOCK, w.shape[0], ROW_BLOCK):
        block = np.asarray(w[start : start + ROW_BLOCK], dtype=dtype)
        g += block.T @ block
    return g


def gram_eigenvalues(w: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Ascending eigenvalues of W^T W (float64) by a `dtype` Gram and syevd.

    float64: numpy's eigvalsh, which releases the GIL (pooled threads overlap). float32: LAPACK's
    ssyevd, since numpy's linalg computes a float32 input in float64 (4096 x 4096: 2.68 s, the
    fp64 time, against 1.23 s for ssyevd); see `ssyevd_eigenvalues` for why not scipy's eigh."""
    g = gram(w, dtype)
    evals = np.linalg.eigvalsh(g) if dtype == np.float64 else ssyevd_eigenvalues(g)
    return np.clip(evals.astype(np.float64), 0.0, None)


def ssyevd_eigenvalues(g: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of a symmetric float32 matrix by LAPACK ssyevd, overwriting `g`, with
    the GIL released.

    scipy's `eigh` keeps the GIL while LAPACK runs (its f2py wrapper is not marked thread-safe),
    so pooled threads queue on it: sixteen 576 x 576 solves took 0.117 s on one thread and
    0.117 s on two, against 0.180 s and 0.097 s for numpy's (GIL-free) dsyevd. So we call scipy's
    own ssyevd, the C function that `scipy.linalg.cython_lapack` exports, through ctypes, which
    drops the GIL for the call: 0.121 s on one thread, 0.064 s on two. Without that export,
    scipy's eigh."""
    solver = _ssyevd()
    if solver is None:
        from scipy.linalg import eigh

        return eigh(g.T, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False)
    import ctypes

    a = np.ascontiguousarray(g, dtype=np.float32).T  # symmetric: its transpose is the Fortran-order array, no copy
    n = a.shape[0]
    evals, work, iwork = np.empty(n, np.float32), np.empty(1, np.float32), np.empty(1, np.int32)
    size, lwork, liwork, info = ctypes.c_int(n), ctypes.c_int(-1), ctypes.c_int(1), ctypes.c_int(0)

    def call() -> None:
        solver(b"N", b"L", ctypes.byref(size), a.ctypes.data, ctypes.byref(size), evals.ctypes.data,
               work.ctypes.data, ctypes.byref(lwork), iwork.ctypes.data, ctypes.byref(liwork), ctypes.byref(info))

    call()  # lwork = -1: a workspace query; the minimum (2n + 1) runs unblocked, 1.4x slower at 576
    work = np.empty(max(int(work[0]), 2 * n + 1), np.float32)
    lwork.value = work.size
    call()
    if info.value != 0:
        raise NumericalError(f"LAPACK ssyevd failed (info={info.value})")
    return evals


@functools.lru_cache(maxsize=1)
def _ssyevd():  # noqa: ANN202
    """scipy's ssyevd as a ctypes function (which releases the GIL), or None if not exported."""
    import ctypes

    try:
        from scipy.linalg import cython_lapack

        capsule = cython_lapack.__pyx_capi__["ssyevd"]
    except (ImportError, AttributeError, KeyError):
        return None
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype, api.PyCapsule_GetName.argtypes = ctypes.c_char_p, [ctypes.py_object]
    api.PyCapsule_GetPointer.restype, api.PyCapsule_GetPointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    i, p = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
    # ssyevd(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info); jobz='N' needs liwork 1
    return ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, i, p, i, p, p, i, p, i, i)(address)


def _eigs_gram(w: np.ndarray) -> np.ndarray:
    """The fp32 route's eigenvalues where it applies and they are trustworthy, else fp64's. An fp32
    Gram matrix overflows from entries of ~1e19 (squares summed past 3.4e38), and ssyevd then fails
    or returns NaN: that too falls back to fp64, where such matrices are analyzed."""
    if route_dtype(w.shape, w.dtype) == np.float32:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                evals = gram_eigenvalues(w, np.float32)
        except NumericalError:
            evals = np.empty(0)
        if evals.size and np.isfinite(evals[-1]) and evals[0] > FP32_RELATIVE_FLOOR * evals[-1]:
            if not _near_ks_tie(evals, w.shape[1]):
                return evals
    return gram_eigenvalues(w, np.float64)


def _near_ks_tie(evals: np.ndarray, m: int) -> bool:
    """Whether fp32 rounding could flip the KS-chosen xmin (or move alpha by > 5e-4): such a
    matrix is redone in fp64 (`tailscope.fit.ties`; about a third of SmolLM2's MLP matrices)."""
    return fit_is_fragile(evals, fp32_error(evals, m))


def route_dtype(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> type:
    """The Gram dtype for a tall N x M matrix stored as `dtype` (see the module docstring for the
    measurements). A float64 matrix stays in float64: its owner kept digits fp32 would drop."""
    n, m = shape[0], shape[1]
    narrow = np.dtype(dtype).itemsize <= 4
    return np.float32 if FP32_GRAM and narrow and m >= FP32_MIN_M and n >= FP32_MIN_Q * m else np.float64


def _svals_svd(w: np.ndarray) -> np.ndarray:
    from scipy.linalg import svd

    return np.sort(svd(np.asarray(w, dtype=np.float64), compute_uv=False, check_finite=False))


def blas_threads(n: int, m: int, dtype: np.dtype | type = np.float32) -> int | None:
    """BLAS threads for the Gram matrix of an N x M matrix stored as `dtype`: one for a small
    problem, else the pool's default (None).

    A few-ms solve gains nothing from a second thread and loses much when the cores are busy:
    MiniLM's 384 x 384 matrices took 1.4 s in all on one OpenBLAS thread against 15 s on two on
    a loaded 2-core machine. Large problems do gain on a quiet machine (measured, 2 idle cores:
    30522 x 384 Gram 0.125 s on one thread, 0.083 s on two; ten 1536 x 384 Gram + eigh 0.087 s
    vs 0.060 s), hence a rule on the work N * M^2, not on M alone.

    The fp32 route gains from a second thread only far later (`bench_routes.py`, quiet, one
    thread against two: 576 x 1536 11.5 vs 12.0 ms, 1024 x 4096 60.6 vs 66 ms, and 320 x 1280
    2.9 vs 7.9 ms; in fp64 the second thread does pay, 134 -> 92 ms at 1024 x 4096), so it keeps
    one thread up to FP32_THREADED_MIN_FLOPS.
    """
    fp32 = route_dtype((n, m), dtype) == np.float32
    return 1 if float(n) * m * m < (FP32_THREADED_MIN_FLOPS if fp32 else THREADED_MIN_FLOPS) else None


@functools.lru_cache(maxsize=1)
def _controller():  # noqa: ANN202
    """One threadpoolctl controller (finding the BLAS libraries costs ~1 ms per lookup)."""
    import scipy.linalg  # noqa: F401 - load scipy's BLAS first: threadpoolctl limits only libraries already loaded
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_pinned = threading.Event()  # set while `one_blas_thread` holds BLAS at one thread for a compute pool


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread for a block of pooled compute threads (executors.run_serial); the
    per-matrix limit below stands aside meanwhile, so that no thread resets the pool-wide limit."""
    with _controller().limit(limits=1, user_api="blas"):
        _pinned.set()
        try:
            yield
        finally:
            _pinned.clear()


def _limited(n: int, m: int, dtype: np.dtype | type = np.float32):  # noqa: ANN202
    threads = blas_threads(n, m, dtype)
    if threads is None or _pinned.is_set():
        return nullcontext()
    return _controller().limit(limits=threads, user_api="blas")


def singular_values(w: np.ndarray) -> tuple[np.ndarray, bool]:
    """Ascending singular values of a tall W and whether they came from the exact SVD route."""
    with _limited(*w.shape, w.dtype):
        return _singular_values(w)


def _singular_values(w: np.ndarray) -> tuple[np.ndarray, bool]:
    evals = _eigs_gram(w)
    if evals.size and evals[0] <= GRAM_RELATIVE_FLOOR * evals[-1]:
        return _svals_svd(w), True
    return np.sqrt(evals), False


def _rank_loss(sv: np.ndarray, n: int) -> int:
    """weightwatcher's calc_rank_loss: singular values at or below sv_max * N * eps."""
    if sv.size == 0:
        return 0
    tol = sv[-1] * n * EPS64
    return int(np.count_nonzero(sv <= tol))


def compute_spectrum(mats: list[np.ndarray], n: int, device: str = "cpu") -> Spectrum:
    """Pooled ESD of a layer's matrices (all tall, N x M)."""
    for w in mats:
        check_finite(w)
    if device == "cpu":
        routed = [singular_values(w) for w in mats]
        parts = [p for p, _ in routed]
    else:
        from tailscope.spectrum.torch_route import torch_singular_values_batch

        parts = torch_singular_values_batch(mats, device)
        routed = [(p, bool(p.size and p[0] ** 2 <= GRAM_RELATIVE_FLOOR * p[-1] ** 2)) for p in parts]
    ranks = _ranks(mats, routed)
    evals = np.sort(np.concatenate([p * p for p in parts]))
    return Spectrum(
        evals=evals,
        sv_max=float(max(p[-1] for p in parts)),
        sv_min=float(max(p[0] for p in parts)),
        rank_loss=sum(_rank_loss(p, n) for p in parts),
        N=n,
        rank=sum(ranks),
        rank_deficit=sum(p.size for p in parts) - sum(ranks),
    )


def _ranks(mats: list[np.ndarray], routed: list[tuple[np.ndarray, bool]]) -> list[int]:
    """Each matrix's rank at the precision its values carry (`tailscope.spectrum.rank`): float16 storage
    counts as float32, the precision every route computes in at least."""
    out = []
    for w, (sv, via_svd) in zip(mats, routed):
        storage = np.float32 if np.dtype(w.dtype).itemsize < 4 else w.dtype
        eps = precision_eps(storage, np.float64)
        out.append(matrix_rank(sv, w.shape[0], w.shape[1], eps, via_svd))
    return out


def inverted(spec: Spectrum) -> Spectrum:
    """The ESD of (W^T W)^-1: eigenvalues 1/lambda, zero ones dropped.

    weightwatcher inverts inside its loop over Conv2D slices, so a pooled layer's earlier slices
    are inverted again with each later one; here the pooled eigenvalues are inverted once.
    The singular-value facts (sv_max, sv_min, rank_loss) stay those of W, as in weightwatcher.

    >>> s = inverted(Spectrum(np.array([0.0, 0.5, 4.0]), 2.0, 0.0, 1, 10))
    >>> s.evals.tolist()
    [0.25, 2.0]
    """
    positive = spec.evals[spec.evals > 0]
    return dataclasses.replace(spec, evals=np.sort(1.0 / positive))
