"""Report and Description: the details table, its summary, files and the terminal view."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailscope.errors import ConfigError, InputError, printable
from tailscope.outputs import atomic_write, check_file
from tailscope.report.printing import printable_frame
from tailscope.rows.metrics import COLUMNS, DIAGNOSTIC_COLUMNS

# weightwatcher's get_summary metrics
SUMMARY_METRICS = ("log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank", "mp_softrank")
TERMINAL_COLUMNS = (
    "layer_id", "name", "role", "layer", "shape", "alpha", "base_alpha", "D", "xmin", "num_pl_spikes", "lambda_max",
    # shown when their option is on
    "raw_alpha", "num_fingers", "alpha_lo", "alpha_hi", "dk_pvalue", "detX_num", "num_spikes",
    "rand_distance", "num_traps", "tpl_alpha", "p_pl_tpl", "warning",
)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    cut = COLUMNS.index("has_esd")
    order = COLUMNS[:cut] + DIAGNOSTIC_COLUMNS + COLUMNS[cut:]
    lead = [c for c in order if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


TABLE_SUFFIXES = (".csv", ".json", ".parquet")


def check_table_path(path: str | Path) -> Path:
    """Fail before any work on an `out` path that cannot take a table (extension, folder)."""
    return check_file(path, "out", TABLE_SUFFIXES)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write by extension: .csv, .json (records), .parquet; whole or not at all (atomic rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"Expected `out` to end in .csv, .json or .parquet, but got {str(path)!r}")
    writers = {
        ".csv": lambda tmp: df.to_csv(tmp, index=False),
        ".json": lambda tmp: df.to_json(tmp, orient="records", indent=1, double_precision=15),
        ".parquet": lambda tmp: df.to_parquet(tmp, index=False),
    }
    try:
        return atomic_write(path, writers[suffix])
    except ImportError as exc:
        raise InputError(path, f"writing parquet needs pyarrow: pip install 'tailscope[parquet]' ({exc})") from None


@dataclass
class Report:
    """Result of `analyze`: ``details`` (one row per matrix) and ``summary`` (means)."""

    details: pd.DataFrame
    source: str = ""
    config: Any = None
    skipped: list[tuple[Any, str]] = field(default_factory=list, repr=False)
    # the durable results file of this run and how many rows were reused from it
    results_file: str | None = None
    reused: int = 0

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], **kwargs: Any) -> "Report":
        df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(COLUMNS))
        return cls(details=_ordered(df), **kwargs)

    @property
    def summary(self) -> dict[str, float]:
        """Means over successfully fitted rows of weightwatcher's summary metrics, plus counts."""
        df = self.details
        ok = df[df["status"] == "success"] if "status" in df else df
        out = {m: float(ok[m].mean()) for m in SUMMARY_METRICS if m in ok.columns and len(ok)}
        out["num_layers"] = int(len(df))
        out["num_failed"] = int((df["status"] == "failed").sum()) if "status" in df else 0
        if "warning" in df and len(ok):
            out["frac_under_trained"] = float((ok["warning"] == "under-trained").mean())
            out["frac_over_trained"] = float((ok["warning"] == "over-trained").mean())
        return out

    @property
    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(_reason_group(r) for _, r in self.skipped))

    @property
    def experts(self) -> pd.DataFrame:
        """Mixture-of-experts summary per (layer, role); empty for a dense model."""
        from tailscope.report.experts import expert_summary

        return expert_summary(self.details, self.skipped)

    def save(self, path: str | Path) -> Path:
        """Write the full details table (.csv, .json or .parquet)."""
        return write_table(self.details, path)

    def to_text(self, max_rows: int = 400) -> str:
        """The terminal view: key columns per matrix and the summary."""
        cols = [c for c in TERMINAL_COLUMNS if c in self.details.columns]
        shown = printable_frame(self.details[cols].head(max_rows))
        table = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
        lines = [table, "", f"summary of {printable(self.source)}:"]
        lines += [f"  {k:<20} {v:.4g}" if isinstance(v, float) else f"  {k:<20} {v}" for k, v in self.summary.items()]
        if self.skipped:
            lines.append("  skipped: " + printable(", ".join(f"{n} {r}" for r, n in sorted(self.skip_counts.items()))))
        experts = self.experts  # mixture-of-experts summary
        if not experts.empty:
            from tailscope.report.experts import experts_text

            lines += ["", experts_text(experts)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Report({self.source!r}, {len(self.details)} rows, summary={self.summary})"


def _reason_group(reason: str) -> str:
    """Collapse per-matrix numbers so reasons count by kind ('num_evals 2 < min_evals 8' -> 'num_evals < min_evals')."""
    return " ".join(w for w in reason.split() if not w.replace(".", "").replace("(", "").replace(")", "").isdigit())


@dataclass
class Description:
    """Result of `describe`: every tensor found, its geometry and role, and what is skipped."""

    details: pd.DataFrame
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    card: Any = None  # ArchitectureCard from config.json / GGUF metadata, or None

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], **kwargs: Any) -> "Description":
        df = pd.DataFrame.from_records(rows)
        if df.empty:
            return cls(details=df, **kwargs)
        for col in ("layer", "expert", "M", "N", "rf", "num_evals"):
            if col in df:
                df[col] = df[col].astype("Int64")
        return cls(details=df, **kwargs)

    @property
    def skip_counts(self) -> dict[str, int]:
        df = self.details
        if df.empty:
            return {}
        return dict(Counter(_reason_group(r) for r in df.loc[~df["analyzed"], "skip_reason"]))

    def save(self, path: str | Path) -> Path:
        return write_table(self.details, path)

    def to_text(self, max_rows: int = 1000) -> str:
        df = self.details
        head = [self.card.to_text(), ""] if self.card is not None else []
        if df.empty:
            source = printable(self.source)
            return "\n".join(head + [f"{source}: no weights (config only)" if head else f"{source}: no tensors"])
        cols = ["layer_id", "name", "role", "layer", "expert", "shape", "N", "M", "Q", "num_evals", "dtype"]
        shown = printable_frame(df[df["analyzed"]][cols].head(max_rows))
        table = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
        n_an = int(df["analyzed"].sum())
        lines = head + [table, "", f"{n_an} matrices to analyze, {len(df) - n_an} tensors skipped"]
        lines += [f"  skipped {n}: {printable(r)}" for r, n in sorted(self.skip_counts.items())]
        return "\n".join(lines)
