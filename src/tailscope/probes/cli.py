"""`tailscope probe MODEL... [--prompt TEXT] [--prompts FILE] [--plots DIR] [--out FILE.json]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from tailscope.errors import InputError
from tailscope.untrusted.regular_files import read_regular_text

MAX_PROMPT_BYTES = 16 * 2**20

FIGURE_NAME = "probe.png"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``probe`` subcommand."""
    p = sub.add_parser("probe", help="residual-stream gains, sub-block gains, (un)embedding norms, output entropy")
    p.add_argument("models", nargs="+", metavar="MODEL", help="Hugging Face model directory or .gguf file (several: compared side by side)")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--prompts", type=Path, help="file with one prompt per line")
    p.add_argument("--tokenizer", help="read the tokenizer from here instead of the model")
    p.add_argument("--plots", type=Path, help=f"directory for the four-panel figure ({FIGURE_NAME})")
    p.add_argument("--out", "-o", type=Path, help="write the full report (.json)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="where the model runs (auto: cuda if available)")
    p.add_argument("--max-tokens", type=int, default=512, help="tokens of the prompt text run through the model")
    p.add_argument("--no-weights", action="store_true", help="skip the embedding/unembedding matrix analysis")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(run=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    """--prompt values, then the lines of --prompts; the built-in prompts when neither is given."""
    from tailscope.probes.config import DEFAULT_PROMPTS

    prompts = list(args.prompt)
    if args.prompts:
        if not args.prompts.exists():
            raise InputError(args.prompts, "prompt file not found")
        text = read_regular_text(args.prompts, MAX_PROMPT_BYTES, "prompt file")
        prompts += [line for line in text.splitlines() if line.strip()]
    return prompts or list(DEFAULT_PROMPTS)


def run(args: argparse.Namespace) -> int:
    from tailscope.outputs import check_directory, check_file
    from tailscope.probes.config import ProbeConfig
    from tailscope.probes.loading import release
    from tailscope.probes.report import ProbeReport
    from tailscope.spectrum.torch_route import resolve_device

    if args.out:
        check_file(args.out, "out", (".json",))
    if args.plots:
        check_directory(args.plots, "plots")
    config = ProbeConfig(max_tokens=args.max_tokens, weights=not args.no_weights)
    prompts, device = read_prompts(args), resolve_device(args.device)
    reports = []
    for path in args.models:
        reports.append(_probe_one(path, args, prompts, device, config))
        release()  # the model went out of scope with _probe_one
    report = ProbeReport.combine(reports)
    print(report.to_text())
    if args.plots:
        report.plot(args.plots / FIGURE_NAME)
        print(f"wrote {args.plots / FIGURE_NAME}")
    if args.out:
        print(f"wrote {report.save(args.out)}")
    return 0


def _probe_one(path: str, args: argparse.Namespace, prompts: list[str], device: str, config: object) -> object:
    from tailscope.probes.loading import load_for_probe
    from tailscope.probes.runner import probe

    model, tok = load_for_probe(path, device=device, tokenizer=args.tokenizer)
    return probe(model, tok, prompts, name=_label(path, args.models), config=config)


def _label(path: str, all_paths: list[str]) -> str:
    """The file or directory name; the full path when two models share a name."""
    name = Path(path).name.removesuffix(".gguf")
    return name if sum(Path(p).name.removesuffix(".gguf") == name for p in all_paths) == 1 else str(path)
