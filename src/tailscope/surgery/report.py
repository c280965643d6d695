"""What a surgery did (or, for a dry run, would do): one row per matrix, printed and saved as the sidecar."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tailscope.report.surgery_section import PRUNE_SIDECAR, TRAPS_SIDECAR  # noqa: F401 (the writers' names)

PRUNE_TOOL, TRAPS_TOOL = "tailscope.prune", "tailscope.remove_traps"  # the sidecar's "tool": what --overwrite may replace

# (column, header, format) of the printed tables
PRUNE_COLUMNS = (("name", "matrix", "<36"), ("layer", "block", ">5"), ("role", "role", "<9"), ("params", "params", ">9"),
                 ("alpha", "alpha", ">7.3f"), ("metric", "mapped", ">7.3f"), ("sparsity", "sparsity", ">8.4f"),
                 ("achieved", "achieved", ">8.4f"))
TRAPS_COLUMNS = (("name", "matrix", "<36"), ("layer", "block", ">5"), ("role", "role", "<9"), ("num_traps", "traps", ">5"),
                 ("traps_after", "after", ">5"), ("ks_before", "KS before", ">9.4f"), ("ks_after", "KS after", ">8.4f"),
                 ("rel_change", "|dW|/|W|", ">8.4f"))


@dataclass
class SurgeryReport:
    """Settings and per-matrix rows of one `prune` or `remove_traps` run."""

    tool: str
    source: str
    destination: str | None
    settings: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "source": self.source, "destination": self.destination, "dry_run": self.dry_run,
                **self.settings, "summary": self.summary, "tensors": self.rows}

    def to_text(self) -> str:
        columns = PRUNE_COLUMNS if self.tool == PRUNE_TOOL else TRAPS_COLUMNS
        columns = tuple(c for c in columns if any(c[0] in r for r in self.rows))
        head = " ".join(f"{h:{_width(f)}}" for _, h, f in columns)
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(" ".join(_cell(r.get(c), f) for c, _, f in columns))
        lines.append(", ".join(f"{k}: {_short(v)}" for k, v in self.summary.items()))
        return "\n".join(lines)


def _width(fmt: str) -> str:
    return fmt[0] + "".join(ch for ch in fmt[1:].split(".")[0] if ch.isdigit())


def _cell(value: Any, fmt: str) -> str:
    width = _width(fmt)
    if value is None or (isinstance(value, float) and value != value):
        return f"{'-':{width}}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:{fmt}}"
    return f"{str(value)[:int(width[1:])]:{width}}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
