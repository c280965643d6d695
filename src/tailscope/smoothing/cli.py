"""`tailscope smooth SRC -o DST [--layers ...] [--method ...] [--percent P] [--dry-run] [--overwrite]`."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, layers_type) -> None:  # noqa: ANN001 - cli._layers
    """Register the ``smooth`` subcommand."""
    p = sub.add_parser("smooth", help="write a checkpoint whose chosen matrices keep only their top/tail singular components")
    p.add_argument("path", metavar="SRC", help="safetensors file or directory (sharded or not), or a dense GGUF file")
    p.add_argument("--out", "-o", metavar="DST", help="new directory for the smoothed checkpoint")
    p.add_argument("--layers", type=layers_type, default=(), help="comma-separated ids (negative drops), roles or name regexes; prefix - to drop")
    p.add_argument("--method", choices=("detx", "rmt", "svd", "alpha_min", "sharpen"), default="detx",
                   help="which components to keep (see the smoothing docs page)")
    p.add_argument("--percent", type=float, default=0.8, help="fraction of the rank kept by --method svd (default 0.8)")
    p.add_argument("--dry-run", action="store_true", help="print what would be kept; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists and is not empty")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle of --method sharpen")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tailscope.errors import ConfigError
    from tailscope.smoothing.run import SIDECAR, smooth

    if not args.dry_run and not args.out:
        raise ConfigError("smooth needs -o/--out DST (or --dry-run)")
    report = smooth(args.path, args.out, layers=args.layers, method=args.method, percent=args.percent,
                    dry_run=args.dry_run, overwrite=args.overwrite, seed=args.seed)
    print(report.to_text())
    if not args.dry_run:
        print(f"wrote {args.out} (details in {SIDECAR})")
    return 0
