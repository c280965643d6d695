"""Command line: `tailscope analyze|describe|probe|smooth|prune|remove-traps|perplexity ...` (also `python -m tailscope`).

Errors that tailscope raises on purpose print one line and exit with code 2; `--debug` shows
the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from tailscope.config import AnalysisConfig
from tailscope.errors import ConfigError, TailscopeError

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
    p.add_argument("--min-evals", type=int, default=8, help="skip matrices with fewer eigenvalues (min(N, M)) than this")
    p.add_argument("--max-evals", type=int, default=15000, help="skip matrices with more eigenvalues than this")
    p.add_argument("--max-n", type=int, default=AnalysisConfig.max_n, help="skip matrices whose long side is larger")
    p.add_argument("--max-elements", type=int, default=AnalysisConfig.max_elements,
                   help="skip matrices holding more values once decoded (default 2^29)")
    p.add_argument("--max-refs", type=int, default=AnalysisConfig.max_refs,
                   help="refuse a model listing more matrices, experts counted one by one (default 200000)")
    p.add_argument("--conv2d", choices=("slices", "unfold"), default="slices",
                   help="Conv2D kernels as one matrix per kernel position (weightwatcher's way) or unfolded to one")
    p.add_argument("--out", "-o", help="write the full table (.csv, .json or .parquet)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailscope", description="Data-free spectral diagnostics of neural-network weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="per-layer alpha and spectral metrics")
    _common(a)
    a.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where eigenvalues are computed (cuda: the torch route)")
    a.add_argument("--seed", type=int, default=0, help="seed of the randomization shuffles and the bootstrap")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    _diagnostic_flags(a)
    # LLM workflows
    a.add_argument("--base", help="base model: analyze W - W_base (or, with --peft, show each base layer's alpha)")
    a.add_argument("--peft", action="store_true", help="PATH is a PEFT LoRA adapter directory")
    a.add_argument("--html", help="also write a self-contained HTML report to this file")
    # plots
    a.add_argument("--plots", metavar="DIR", help="write PNG figures (per layer and per model) to DIR")
    # durable, resumable results
    a.add_argument("--results", help="append each finished row (fsync'ed) to this .jsonl file, or to one file per model in "
                   "this directory; a rerun with the same path reuses the rows already there")
    _executor_flags(a)
    a.set_defaults(run=_run_analyze)
    # many checkpoints into one table
    m = sub.add_parser("analyze-many", help="analyze every model listed in a text file into one table with a `model` column")
    m.add_argument("list", help="text file: one model path a line ('#' comments; relative to the file)")
    m.add_argument("--layers", type=_layers, default=(), help="as for analyze")
    m.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where eigenvalues are computed")
    m.add_argument("--out", "-o", help="write the table (.csv, .json or .parquet)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.add_argument("--debug", action="store_true", help="show tracebacks")
    _executor_flags(m)
    m.set_defaults(run=_run_analyze_many)
    d = sub.add_parser("describe", help="list every matrix found, without computing spectra")
    _common(d)
    d.set_defaults(run=_run_describe)
    # compare and report
    c = sub.add_parser("compare", help="summary metrics side by side and alpha-vs-alpha plots of two or more models")
    c.add_argument("paths", nargs="+", help="two or more models")
    c.add_argument("--names", type=lambda t: [s.strip() for s in t.split(",")], help="comma-separated labels")
    c.add_argument("--layers", type=_layers, default=(), help="as for analyze")
    c.add_argument("--plots", help="directory for alpha_scatter.png and alpha_hist.png")
    c.add_argument("--html", help="write a self-contained HTML comparison report")
    c.add_argument("--out", "-o", help="write the name-matched alphas (.csv, .json or .parquet)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--debug", action="store_true", help="show tracebacks")
    c.add_argument("--cache", default=None, help="as for analyze: tensors shared by the models are computed once")
    c.set_defaults(run=_run_compare)
    r = sub.add_parser("report", help="analyze and write one self-contained HTML report")
    r.add_argument("path", help="model to analyze")
    r.add_argument("--output", "-o", default="report.html", help="HTML file to write (default report.html)")
    r.add_argument("--base", help="as for analyze")
    r.add_argument("--peft", action="store_true", help="as for analyze")
    r.add_argument("--layers", type=_layers, default=(), help="as for analyze")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    r.set_defaults(run=_run_report)
    from tailscope.probes.cli import add_parser as add_probe_parser  # activation probes

    add_probe_parser(sub)
    from tailscope.smoothing.cli import add_parser as add_smooth_parser  # SVD smoothing

    add_smooth_parser(sub, _layers)
    from tailscope.surgery.cli import add_parsers as add_surgery_parsers

    add_surgery_parsers(sub, _layers)
    return parser


def _diagnostic_flags(a: argparse.ArgumentParser) -> None:  # diagnostics
    g = a.add_argument_group("diagnostics (each adds columns)")
    g.add_argument("--fix-fingers", nargs="?", const="clip_xmax", default=None, choices=("clip_xmax", "dragon_kings"),
                   help="refit without the top outlier eigenvalues (weightwatcher's clip_xmax): raw_alpha, num_fingers")
    g.add_argument("--max-fingers", type=int, default=10, help="bound of the finger search (default 10)")
    g.add_argument("--detx", action="store_true", help="TRACE-LOG (detX) tail: detX_num, detX_val, delta_lambda")
    g.add_argument("--randomize", action="store_true", help="ESD of W with shuffled entries: rand_distance, num_traps, ...")
    g.add_argument("--mp-fit", action="store_true", help="Marchenko-Pastur fit of the bulk: num_spikes, mp_softrank, bulk_max")
    g.add_argument("--fit", choices=("PL", "TPL"), default="PL", help="TPL adds a truncated power law and PL/TPL/lognormal tests")
    g.add_argument("--dragon-kings", action="store_true", help="Dragon-King test of the largest eigenvalues: dk_pvalue, dk_count")
    g.add_argument("--bootstrap", type=int, default=0, metavar="N", help="N resamples for a CI of alpha: alpha_lo, alpha_hi")
    g.add_argument("--confidence", type=float, default=0.95, help="level of the bootstrap CI (default 0.95)")
    g.add_argument("--farms", action="store_true", help="aspect-ratio-unbiased alpha of fixed-shape windows (FARMS): alpha_farms")
    g.add_argument("--farms-rows", type=int, default=100, help="FARMS window's shorter side (default 100)")
    g.add_argument("--farms-q", type=float, default=2.0, help="FARMS window aspect ratio (default 2.0: 100 x 200)")
    g.add_argument("--farms-per-dim", type=int, default=10, help="FARMS window positions per side (default 10: 100 windows)")
    g.add_argument("--farms-fit", choices=("median", "peak", "ks"), default="median",
                   help="fit of the pooled FARMS ESD: PL_Alpha_Hill at the median (default, as the FARMS code), at the peak, or KS")
    g.add_argument("--hill", choices=("median", "peak"), default=None, help="PL_Alpha_Hill of TempBalance/AlphaPruning: alpha_hill")


def _executor_flags(p: argparse.ArgumentParser) -> None:  # performance and scale
    g = p.add_argument_group("execution")
    g.add_argument("--executor", choices=("serial", "process", "ray"), default="serial",
                   help="serial (default), a local process pool, or Ray; parallel ones read each tensor in the worker")
    g.add_argument("--workers", type=int, default=0, help="worker processes / Ray tasks in flight (0 = one per CPU)")
    g.add_argument("--address", default=None, help="Ray cluster address for --executor ray (default: start a local one)")
    g.add_argument("--cache", default=None, help="directory of rows keyed by tensor content: a tensor seen before "
                   "(in this or any model analyzed with the same cache) is not computed again")


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(executor=args.executor, workers=args.workers, address=args.address, cache=args.cache)


def check_outputs(out: str | None = None, html: str | None = None, plots: str | None = None) -> None:
    """Refuse unusable output paths (extension, a directory in the way, no write access, a file
    where a folder goes) before any work, so an hour of analysis is never lost to a typo."""
    from tailscope.outputs import check_directory, check_file
    from tailscope.report.table import check_table_path

    if out:
        check_table_path(out)
    if html:
        check_file(html, "html")
    if plots:
        check_directory(plots, "plots")


def _run_analyze_many(args: argparse.Namespace) -> int:
    from tailscope.analysis.many import analyze_many, read_list
    from tailscope.report.table import write_table

    check_outputs(out=args.out)
    table = analyze_many(read_list(args.list), layers=args.layers, device=args.device, progress=not args.quiet,
                         **_executor_options(args))
    cols = [c for c in ("model", "layer_id", "name", "N", "M", "alpha", "status") if c in table.columns]
    print(table[cols].to_string(index=False))
    if args.out:
        print(f"wrote {write_table(table, args.out)}")
    return 0


def _diagnostic_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(fix_fingers=args.fix_fingers, max_fingers=args.max_fingers, detx=args.detx, randomize=args.randomize,
                mp_fit=args.mp_fit, fit=args.fit, dragon_kings=args.dragon_kings, bootstrap=args.bootstrap,
                confidence=args.confidence, farms=args.farms, farms_rows=args.farms_rows, farms_q=args.farms_q,
                farms_per_dim=args.farms_per_dim, farms_fit=args.farms_fit, hill=args.hill)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(layers=args.layers, min_evals=args.min_evals, max_evals=args.max_evals, max_n=args.max_n,
                max_elements=args.max_elements, max_refs=args.max_refs, conv2d=args.conv2d)


def _run_analyze(args: argparse.Namespace) -> int:
    from tailscope.analysis.pipeline import analyze

    check_outputs(out=args.out, html=args.html, plots=args.plots)
    report = analyze(args.path, base=args.base, peft=args.peft, device=args.device, seed=args.seed,
                     progress=not args.quiet, plot_dir=args.plots, results=args.results, **_options(args),
                     **_diagnostic_options(args), **_executor_options(args))
    print(report.to_text())
    if args.plots:
        print(f"plots in {args.plots}")
    if report.results_file:
        new = len(report.details) - report.reused
        print(f"results: {report.results_file} ({report.reused} rows reused, {new} new)", file=sys.stderr)
    if args.out:
        print(f"wrote {report.save(args.out)}")
    if args.html:
        from tailscope.report.html import write_html

        print(f"wrote {write_html(report, args.html, model=args.path)}")
    return 0


def _run_describe(args: argparse.Namespace) -> int:
    from tailscope.analysis.pipeline import describe

    check_outputs(out=args.out)
    desc = describe(args.path, **_options(args))
    print(desc.to_text())
    if args.out:
        print(f"wrote {desc.save(args.out)}")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from tailscope.comparison.compare import compare
    from tailscope.report.table import write_table

    if len(args.paths) < 2:
        raise ConfigError("`tailscope compare` needs at least two models")
    check_outputs(out=args.out, html=args.html, plots=args.plots)
    comp = compare(*args.paths, names=args.names, plots=args.plots, layers=args.layers, progress=not args.quiet,
                   cache=args.cache)
    print(comp.to_text())
    if args.out:
        print(f"wrote {write_table(comp.matched, args.out)}")
    if args.html:
        from tailscope.report.html import write_compare_html

        print(f"wrote {write_compare_html(comp, args.html)}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from tailscope.analysis.pipeline import analyze
    from tailscope.report.html import write_html

    check_outputs(html=args.output)
    report = analyze(args.path, base=args.base, peft=args.peft, layers=args.layers, progress=not args.quiet)
    print(f"wrote {write_html(report, args.output, model=args.path)}")
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
