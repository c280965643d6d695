"""`tailscope prune`, `tailscope remove-traps` and `tailscope perplexity`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parsers(sub: argparse._SubParsersAction, layers_type: Any) -> None:
    """Register the three subcommands."""
    p = sub.add_parser("prune", help="alpha-allocated (AlphaPruning) or uniform unstructured pruning into a new checkpoint")
    _source(p, layers_type)
    p.add_argument("--sparsity", type=float, required=True, help="target fraction of the prunable parameters set to zero, in (0, 1)")
    p.add_argument("--allocation", choices=("alpha", "uniform", "farms"), default="alpha",
                   help="per-layer sparsity from alpha (AlphaPruning), the same everywhere, or from FARMS alpha")
    p.add_argument("--method", choices=("magnitude", "wanda"), default="magnitude",
                   help="score pruned by: |W|, or |W| x input-activation norm on the calibration text")
    p.add_argument("--by", choices=("block", "matrix"), default="block", help="map each block's mean alpha (default) or each matrix's")
    p.add_argument("--epsilon", type=float, default=0.3, help="sparsities span [1-eps, 1+eps] x target before rescaling (default 0.3)")
    p.add_argument("--metric", default="alpha", help="analysis column mapped by --allocation alpha (default alpha)")
    p.add_argument("--calibration", type=Path, help="Wanda calibration text (default: the bundled public-domain text)")
    p.set_defaults(run=_run_prune)
    t = sub.add_parser("remove-traps", help="replace correlation traps (spikes of the shuffled ESD) by random components")
    _source(t, layers_type)
    t.add_argument("--seed", type=int, default=0, help="the analyze --seed whose shuffles define the traps")
    t.set_defaults(run=_run_traps)
    q = sub.add_parser("perplexity", help="perplexity of a causal LM on a text (default: the bundled held-out text)")
    q.add_argument("path", metavar="MODEL", help="Hugging Face model directory or .gguf file")
    q.add_argument("--text", type=Path, help="UTF-8 text file (default: the bundled public-domain held-out text)")
    q.add_argument("--context", type=int, default=512, help="tokens per window (default 512)")
    q.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where the model runs")
    q.add_argument("--debug", action="store_true", help="show tracebacks")
    q.set_defaults(run=_run_perplexity)


def _source(p: argparse.ArgumentParser, layers_type: Any) -> None:
    p.add_argument("path", metavar="SRC", help="safetensors file or directory (sharded or not), or a dense GGUF file")
    p.add_argument("--out", "-o", metavar="DST", help="new directory for the edited checkpoint")
    p.add_argument("--layers", type=layers_type, default=(), help="comma-separated ids, roles or name regexes; prefix - to drop")
    p.add_argument("--dry-run", action="store_true", help="print the table; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists and is not empty")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _need_out(args: argparse.Namespace) -> None:
    from tailscope.errors import ConfigError

    if not args.dry_run and not args.out:
        raise ConfigError(f"{args.command} needs -o/--out DST (or --dry-run)")


def _finish(report: Any, args: argparse.Namespace, sidecar: str) -> int:
    print(report.to_text())
    if not args.dry_run:
        print(f"wrote {args.out} (details in {sidecar})")
    return 0


def _run_prune(args: argparse.Namespace) -> int:
    from tailscope.surgery.pruning import prune
    from tailscope.surgery.report import PRUNE_SIDECAR

    _need_out(args)
    report = prune(args.path, args.out, sparsity=args.sparsity, allocation=args.allocation, method=args.method,
                   by=args.by, epsilon=args.epsilon, metric=args.metric, calibration=args.calibration,
                   layers=args.layers, dry_run=args.dry_run, overwrite=args.overwrite)
    return _finish(report, args, PRUNE_SIDECAR)


def _run_traps(args: argparse.Namespace) -> int:
    from tailscope.surgery.report import TRAPS_SIDECAR
    from tailscope.surgery.trap_removal import remove_traps

    _need_out(args)
    report = remove_traps(args.path, args.out, seed=args.seed, layers=args.layers, dry_run=args.dry_run,
                          overwrite=args.overwrite)
    return _finish(report, args, TRAPS_SIDECAR)


def _run_perplexity(args: argparse.Namespace) -> int:
    from tailscope.surgery.evaluation import perplexity

    print(perplexity(args.path, args.text, context=args.context, device=args.device))
    return 0
