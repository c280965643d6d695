"""Double descent seen through the inverse ESD (the weightwatcher blog's experiment, run with tailscope).

    python examples/double_descent.py [--n 100] [--seeds 5] [--out double_descent.png]

Linear regression on +-1 hypercube data: N features, labels y = majority(x) = sign(sum x) (ties
-> +1), P training points at load P/N from 0.1 to 3, the minimum-norm least-squares fit
w = pinv(X) y, test accuracy of sign(X_test w) on fresh points. The estimator is governed by the
inverse of the data covariance X^T X, so each training matrix X is analyzed with
`inverse=True` through the weightwatcher-compatible facade (eigenvalues 1/lambda of X^T X).
Near P/N = 1 the smallest eigenvalues of X^T X go to zero (the Marchenko-Pastur hard edge),
the inverse ESD grows a heavy tail (small alpha) and the test error peaks.

The blog's claim is that alpha ~ 2 where the test error is lowest and alpha < 2 near the peak;
the script prints whether that holds on these numbers, whichever way it comes out.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

import tailscope.compat as ww

LOADS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class Point:
    load: float
    test_error: float
    test_error_std: float
    alpha: float


def majority(x: np.ndarray) -> np.ndarray:
    return np.where(x.sum(axis=1) >= 0, 1.0, -1.0)


def hypercube(rng: np.random.Generator, p: int, n: int) -> np.ndarray:
    return rng.choice((-1.0, 1.0), size=(p, n))


def one_run(load: float, n: int, seed: int, n_test: int = 2000) -> tuple[float, float]:
    """(test error, inverse-ESD alpha) for one training set."""
    rng = np.random.default_rng(seed)
    p = max(2, int(round(load * n)))
    x, x_test = hypercube(rng, p, n), hypercube(rng, n_test, n)
    w = np.linalg.pinv(x) @ majority(x)
    error = float(np.mean(np.sign(x_test @ w) != majority(x_test)))
    details = ww.WeightWatcher(model=ww.SingleLayerModel(weights=x)).analyze(inverse=True, min_evals=2)
    return error, float(details["alpha"].iloc[0])


def sweep(loads: tuple[float, ...] = LOADS, n: int = 100, seeds: int = 5) -> list[Point]:
    points = []
    for load in loads:
        runs = np.array([one_run(load, n, seed) for seed in range(seeds)])
        points.append(Point(load, runs[:, 0].mean(), runs[:, 0].std(), float(np.nanmean(runs[:, 1]))))
    return points


def verdict(points: list[Point]) -> list[str]:
    """The blog's claims, checked on our numbers."""
    best = min(points, key=lambda p: p.test_error)
    peak = max(points, key=lambda p: p.test_error)
    return [
        f"test error peaks at P/N = {peak.load:g} (error {peak.test_error:.3f}); near 1: {'yes' if 0.8 <= peak.load <= 1.25 else 'no'}",
        f"lowest test error at P/N = {best.load:g} (error {best.test_error:.3f}) with alpha {best.alpha:.2f}: "
        f"alpha ~ 2 (within 0.5) there: {'holds' if abs(best.alpha - 2.0) <= 0.5 else 'does not hold'}",
        f"alpha at the peak {peak.alpha:.2f}: alpha < 2 there: {'holds' if peak.alpha < 2 else 'does not hold'}",
    ]


def plot(points: list[Point], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = [p.load for p in points]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.errorbar(loads, [p.test_error for p in points], yerr=[p.test_error_std for p in points], marker="o", capsize=3)
    ax1.set(xlabel="load P/N", ylabel="test error", title="Test error of min-norm least squares")
    ax2.plot(loads, [p.alpha for p in points], marker="o", color="tab:purple")
    ax2.axhline(2.0, color="gray", ls="--", lw=1, label="alpha = 2")
    ax2.set(xlabel="load P/N", ylabel="alpha of the inverse ESD", title="HTSR alpha, inverse=True")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.axvline(1.0, color="red", lw=0.8, alpha=0.6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="double_descent.png")
    args = parser.parse_args()
    points = sweep(n=args.n, seeds=args.seeds)
    print(f"{'P/N':>5} {'test error':>11} {'+-':>6} {'alpha':>7}")
    for p in points:
        print(f"{p.load:5.2f} {p.test_error:11.3f} {p.test_error_std:6.3f} {p.alpha:7.2f}")
    print("\n".join(verdict(points)))
    plot(points, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
