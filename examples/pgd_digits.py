"""WW-PGD and AlphaLR against plain AdamW, offline: an MLP on 8x8 digits and a tiny char transformer.

    python examples/pgd_digits.py                       # 5 paired seeds x 35 epochs, digits + char model
    python examples/pgd_digits.py --data ~/fashion      # the same MLP on Fashion-MNIST/MNIST IDX files
    python examples/pgd_digits.py --seeds 2 --epochs 10 --no-char   # a quick look

"Paired" seeds: for a seed, the three methods start from the same weights and see the same
batches, so the differences are the method's. Printed: test accuracy mean +/- std per method,
the mean paired difference to the baseline, per-layer final alpha, and wall time per run with
the overhead over the baseline.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tailscope.train import AlphaLR, ProjectionConfig, SpectralProjection, layer_alphas, layerwise_param_groups

METHODS = ("baseline", "wwpgd", "alphalr")
TEXT = Path(__file__).resolve().parent / "data" / "tiny.txt"
# The library's defaults: every epoch from the first, eta = 0.5, exact trace-log, midpoint tail,
# Adam moments reset, ||W||_F preserved.
PGD_CONFIG = ProjectionConfig()


@dataclass
class Run:
    method: str
    seed: int
    metric: float  # test accuracy in percent
    alphas: dict[str, float]
    seconds: float
    control_seconds: float  # time spent in projections / alpha measurements
    extra: dict[str, float] = field(default_factory=dict)


# -- data ------------------------------------------------------------------------------------

def load_data(data: str | None, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): sklearn's digits (80/20 split) or an IDX directory."""
    if data:
        from tailscope.train import load_mnist

        xtr, ytr = load_mnist(data, "train")
        xte, yte = load_mnist(data, "test")
    else:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(seed).permutation(len(x))
        x, y = x[order].astype(np.float32) / 16.0, y[order]
        cut = int(0.8 * len(x))
        xtr, ytr, xte, yte = x[:cut], y[:cut], x[cut:], y[cut:]
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    as_t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return (as_t((xtr - mean) / std, torch.float32), as_t(ytr, torch.long),
            as_t((xte - mean) / std, torch.float32), as_t(yte, torch.long))


def mlp(n_in: int, n_out: int = 10, hidden: int = 256) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                               torch.nn.ReLU(), torch.nn.Linear(hidden, n_out))


# -- one training run ------------------------------------------------------------------------

def make_optimizer(method: str, model: torch.nn.Module, lr: float, config: ProjectionConfig):
    """(optimizer, per-epoch control callable returning seconds spent)."""
    if method == "baseline":
        return torch.optim.AdamW(model.parameters(), lr=lr), lambda epoch: 0.0
    if method == "wwpgd":
        opt = SpectralProjection(model, torch.optim.AdamW(model.parameters(), lr=lr), config)
        return opt, lambda epoch: opt.project(epoch).seconds
    if method == "alphalr":
        opt = torch.optim.AdamW(layerwise_param_groups(model, lr=lr), lr=lr)
        sched = AlphaLR(opt, model, s_min=0.5, s_max=1.5)

        def control(epoch: int) -> float:
            start = time.perf_counter()
            sched.step()
            return time.perf_counter() - start
        return opt, control
    raise ValueError(f"unknown method {method!r}")


def train_classifier(method: str, seed: int, data: tuple[torch.Tensor, ...], epochs: int,
                     lr: float = 1e-3, batch: int = 64, config: ProjectionConfig = PGD_CONFIG) -> Run:
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = mlp(xtr.shape[1], int(ytr.max()) + 1)
    opt, control = make_optimizer(method, model, lr, config)
    gen = torch.Generator().manual_seed(seed)
    start, spent = time.perf_counter(), 0.0
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(xtr), generator=gen).split(batch):
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        spent += control(epoch)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        acc = 100.0 * float((model(xte).argmax(1) == yte).float().mean())
    return Run(method, seed, acc, layer_alphas(model), seconds, spent)


# -- tiny character-level transformer --------------------------------------------------------

class Block(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (torch.nn.Linear(d, d) for _ in range(4))
        self.up_proj, self.down_proj = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        split = lambda z: z.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        att = F.scaled_dot_product_attention(split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h)),
                                             is_causal=True)
        x = x + self.o_proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.down_proj(F.gelu(self.up_proj(self.ln2(x))))


class CharLM(torch.nn.Module):
    def __init__(self, vocab: int, d: int = 64, layers: int = 2, heads: int = 4, context: int = 32) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, d)
        self.embed_positions = torch.nn.Embedding(context, d)
        self.layers = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(d)
        self.lm_head = torch.nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(idx) + self.embed_positions(torch.arange(idx.shape[1]))
        for block in self.layers:
            x = block(x)
        return self.lm_head(self.norm(x))


def char_windows(context: int = 32) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Train/test windows of the shipped text (first 85% / last 15%) and the vocabulary size."""
    text = TEXT.read_text()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    cut = int(0.85 * len(ids))
    windows = lambda a: a.unfold(0, context + 1, 1)  # noqa: E731
    return windows(ids[:cut]), windows(ids[cut:]), len(chars)


def train_char(method: str, seed: int, epochs: int, lr: float = 3e-3, batch: int = 64,
               config: ProjectionConfig = PGD_CONFIG) -> Run:
    train, test, vocab = char_windows()
    torch.manual_seed(seed)
    model = CharLM(vocab)
    opt, control = make_optimizer(method, model, lr, config)
    gen = torch.Generator().manual_seed(seed)
    start, spent = time.perf_counter(), 0.0
    for epoch in range(epochs):
        for idx in torch.randperm(len(train), generator=gen)[: 40 * batch].split(batch):
            w = train[idx]
            loss = F.cross_entropy(model(w[:, :-1]).reshape(-1, vocab), w[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        spent += control(epoch)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        logits = model(test[:, :-1])
        target = test[:, 1:]
        acc = 100.0 * float((logits.argmax(-1) == target).float().mean())
        bpc = float(F.cross_entropy(logits.reshape(-1, vocab), target.reshape(-1))) / math.log(2)
    return Run(method, seed, acc, layer_alphas(model), seconds, spent, {"bits_per_char": bpc})


# -- report ------------------------------------------------------------------------------------

def run_experiment(trainer, seeds: int, methods=METHODS, **kw) -> dict[str, list[Run]]:
    return {m: [trainer(m, seed, **kw) for seed in range(seeds)] for m in methods}


def mean_alpha_distance(runs: list[Run], target: float = 2.0) -> float:
    """Mean over runs and layers of |alpha - target|."""
    return float(np.mean([abs(a - target) for r in runs for a in r.alphas.values() if math.isfinite(a)]))


def summarize(title: str, results: dict[str, list[Run]], metric: str = "test acc %") -> str:
    base = results["baseline"]
    base_t = np.mean([r.seconds for r in base])
    layers = list(base[0].alphas)
    lines = [f"### {title} ({len(base)} paired seeds)", "",
             f"| method | {metric} | paired diff | " + " | ".join(f"alpha {n}" for n in layers)
             + " | mean abs(alpha-2) | s/run | overhead | control s |",
             "|---" * (7 + len(layers)) + "|"]
    for method, runs in results.items():
        acc = np.array([r.metric for r in runs])
        diff = acc - np.array([r.metric for r in base])
        alphas = [np.nanmean([r.alphas[n] for r in runs]) for n in layers]
        secs = np.mean([r.seconds for r in runs])
        extra = "".join(f" ({k} {np.mean([r.extra[k] for r in runs]):.3f})" for k in runs[0].extra)
        lines.append(
            f"| {method} | {acc.mean():.2f} +/- {acc.std(ddof=1) if len(acc) > 1 else 0:.2f}{extra} | "
            f"{diff.mean():+.2f} | " + " | ".join(f"{a:.2f}" for a in alphas)
            + f" | {mean_alpha_distance(runs):.2f} | {secs:.2f} | {100 * (secs / base_t - 1):+.0f}% | "
            f"{np.mean([r.control_seconds for r in runs]):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="directory of MNIST/Fashion-MNIST IDX files (default: sklearn digits)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=35)
    parser.add_argument("--char-epochs", type=int, default=12)
    parser.add_argument("--no-char", action="store_true", help="skip the char-level transformer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps timings comparable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_data(args.data)
    name = f"MLP {data[0].shape[1]}-256-256-{int(data[1].max()) + 1} on {args.data or 'sklearn digits'}"
    results = run_experiment(train_classifier, args.seeds, data=data, epochs=args.epochs)
    print(summarize(f"{name}, AdamW, {args.epochs} epochs", results))
    if not args.no_char:
        chars = run_experiment(train_char, args.seeds, epochs=args.char_epochs)
        print()
        print(summarize(f"char transformer (2 blocks, d=64) on examples/data/tiny.txt, AdamW, "
                        f"{args.char_epochs} epochs", chars, metric="next-char acc %"))


if __name__ == "__main__":
    main()
