"""Cost of one WW-PGD projection per layer against its floor, one float64 SVD of the same matrix.

    python bench/bench_projection.py [--sizes 256 1024 2048] [--threads 1]

Prints, per square layer size: the bare SVD time, the full `project()` time (SVD + power-law and
detX fits + tail step + write-back + Adam moment reset) and their ratio, measured in the same run.
"""

from __future__ import annotations

import argparse

import torch

from tailscope.train import SpectralProjection

from timing import best_of  # bench/, the script's own folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| layer | SVD s | project s | ratio | fit+step+write s |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(n, n))
        opt = SpectralProjection(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
        w = model[0].weight
        svd = best_of(lambda w=w: torch.linalg.svd(w.detach().double(), full_matrices=False), args.repeats)
        proj = best_of(opt.project, args.repeats)
        print(f"| {n}x{n} | {svd:.3f} | {proj:.3f} | {proj / svd:.2f} | {proj - svd:.3f} |")


if __name__ == "__main__":
    main()
