"""Command line: `tailscope analyze|describe ...` (also `python -m tailscope`).

Errors that tailscope raises on purpose print one line and exit with code 2; `--debug` shows
the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from .errors import TailscopeError

EXIT_USAGE = 2


def _layers(text: str) -> tuple[int | str, ...]:
    """'1,2,-3,mlp_down,attn_.*' -> (1, 2, -3, 'mlp_down', 'attn_.*')."""
    out: list[int | str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(int(part))
        except ValueError:
            out.append(part)
    return tuple(out)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="safetensors file or directory, GGUF file, or .bin/.pt state dict")
    p.add_argument("--layers", type=_layers, default=(), help="comma-separated ids (negative drops), roles or name regexes; prefix - to drop")
    p.add_argument("--min-evals", type=int, default=8)
    p.add_argument("--max-evals", type=int, default=15000)
    p.add_argument("--conv2d", choices=("slices", "unfold"), default="slices")
    p.add_argument("--out", "-o", help="write the full table (.csv, .json or .parquet)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailscope", description="Data-free spectral diagnostics of neural-network weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="per-layer alpha and spectral metrics")
    _common(a)
    a.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    # issue 9: durable, resumable results
    a.add_argument("--results", help="append each finished row (fsync'ed) to this .jsonl file, or to one file per model in "
                   "this directory; a rerun with the same path reuses the rows already there")
    a.set_defaults(run=_run_analyze)
    d = sub.add_parser("describe", help="list every matrix found, without computing spectra")
    _common(d)
    d.set_defaults(run=_run_describe)
    from .probes.cli import add_parser as add_probe_parser  # issue 7: activation probes

    add_probe_parser(sub)
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(layers=args.layers, min_evals=args.min_evals, max_evals=args.max_evals, conv2d=args.conv2d)


def _run_analyze(args: argparse.Namespace) -> int:
    from .pipeline import analyze

    report = analyze(args.path, device=args.device, seed=args.seed, progress=not args.quiet, results=args.results, **_options(args))
    print(report.to_text())
    if report.results_file:  # issue 9
        new = len(report.details) - report.reused
        print(f"results: {report.results_file} ({report.reused} rows reused, {new} new)", file=sys.stderr)
    if args.out:
        print(f"wrote {report.save(args.out)}")
    return 0


def _run_describe(args: argparse.Namespace) -> int:
    from .pipeline import describe

    desc = describe(args.path, **_options(args))
    print(desc.to_text())
    if args.out:
        print(f"wrote {desc.save(args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except TailscopeError as exc:
        if args.debug:
            raise
        print(f"tailscope: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tailscope: interrupted", file=sys.stderr)
        return 130
