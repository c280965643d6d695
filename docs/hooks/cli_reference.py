"""mkdocs hook: expand ``<!-- cli-reference -->`` into the help of every subcommand, read from the
parser itself, so the CLI reference can never drift from the code."""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """Markdown: the top-level usage, then one section per subcommand with its full --help."""
    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help text to the terminal width
    from tailscope.cli import build_parser

    parser = build_parser()
    parts = ["```text", parser.format_help().rstrip(), "```"]
    for name, sub in _subcommands(parser).items():
        parts += ["", f"## `tailscope {name}`", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 - mkdocs hook signature
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
