"""Compare models: summary metrics side by side, per-layer alphas matched by name, and plots.

Matching is by matrix name (the details' ``name`` column), which is what a base and its
fine-tune or instruct version share. Each model is analyzed in turn (streamed as usual), so
comparing three 7B models needs no more memory than analyzing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailscope.errors import ConfigError, printable
from tailscope.report.printing import printable_frame
from tailscope.report.table import Report

# (row label, column of details, how): the side-by-side table
METRICS = (
    ("mean alpha", "alpha", "mean"), ("median alpha", "alpha", "median"),
    ("frac under-trained (alpha > 6)", "warning", "under"), ("frac over-trained (alpha < 2)", "warning", "over"),
    ("mean alpha_weighted", "alpha_weighted", "mean"), ("mean log_alpha_norm", "log_alpha_norm", "mean"),
    ("mean log_norm", "log_norm", "mean"), ("mean log_spectral_norm", "log_spectral_norm", "mean"),
    ("mean stable_rank", "stable_rank", "mean"), ("layers fitted", "status", "ok"), ("layers failed", "status", "failed"),
)


def _metric(df: pd.DataFrame, column: str, how: str) -> float:
    ok = df[df["status"] == "success"] if "status" in df else df
    if how == "ok":
        return float(len(ok))
    if how == "failed":
        return float((df["status"] == "failed").sum()) if "status" in df else 0.0
    if column not in ok or not len(ok):
        return float("nan")
    if how in ("under", "over"):
        return float((ok[column] == f"{how}-trained").mean())
    return float(getattr(ok[column].astype(float), how)())


def _labels(models: tuple[Any, ...], names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(models):
            raise ConfigError(f"Expected `names` to have {len(models)} entries (one per model), but got {len(names)}")
        return list(names)
    out: list[str] = []
    for i, m in enumerate(models):
        label = Path(m.source).name if isinstance(m, Report) else Path(str(m)).name if isinstance(m, (str, Path)) else f"model{i}"
        out.append(label if label not in out else f"{label}#{i}")
    return out


@dataclass
class Comparison:
    """Result of `compare`: the reports, the summary table and the name-matched alphas."""

    labels: list[str]
    reports: list[Report]
    plot_files: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> pd.DataFrame:
        """Rows: metrics; columns: models."""
        data = {lab: [_metric(r.details, c, h) for _, c, h in METRICS] for lab, r in zip(self.labels, self.reports)}
        return pd.DataFrame(data, index=[m for m, _, _ in METRICS])

    @property
    def matched(self) -> pd.DataFrame:
        """Per matrix name present in every model: its role and each model's alpha."""
        frames = []
        for lab, rep in zip(self.labels, self.reports):
            df = rep.details
            ok = df[df["status"] == "success"] if "status" in df else df
            frames.append(ok.set_index("name")[["alpha"]].rename(columns={"alpha": lab}))
        out = pd.concat(frames, axis=1, join="inner")
        roles = self.reports[0].details.drop_duplicates("name").set_index("name")["role"]
        out.insert(0, "role", roles.reindex(out.index))
        return out.reset_index()

    def to_text(self) -> str:
        fmt = lambda v: f"{v:.4g}"  # noqa: E731
        lines = ["comparison (means over fitted layers):", printable_frame(self.summary).to_string(float_format=fmt)]
        m = self.matched
        lines.append(f"\n{len(m)} matrices matched by name in all {len(self.labels)} models")
        if len(m) and len(self.labels) > 1:
            diff = m[self.labels[1]] - m[self.labels[0]]
            lines.append(printable(f"  alpha({self.labels[1]}) - alpha({self.labels[0]}): mean {diff.mean():.4g}, "
                                   f"largest change {m.loc[diff.abs().idxmax(), 'name']} ({diff.loc[diff.abs().idxmax()]:+.4g})"))
        lines += [printable(f"wrote {p}") for p in self.plot_files]
        return "\n".join(lines)

    def save_plots(self, directory: str | Path) -> list[Path]:
        from tailscope.comparison.plots import alpha_histograms, alpha_scatter

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        alphas = [r.details.loc[r.details["status"] == "success", "alpha"].astype(float).to_numpy() for r in self.reports]
        self.plot_files = [alpha_scatter(self.matched, self.labels, d / "alpha_scatter.png"),
                           alpha_histograms(alphas, self.labels, d / "alpha_hist.png")]
        return self.plot_files


def compare(*models: Any, names: list[str] | None = None, plots: str | Path | None = None, **options: Any) -> Comparison:
    """Analyze two or more models (paths, modules, state dicts or `Report`s) and compare them.

    Args:
        models: what to compare; a `Report` is used as is.
        names: labels for the models (default: file or directory names).
        plots: directory to write ``alpha_scatter.png`` and ``alpha_hist.png`` into.
        options: `analyze` options applied to every model.
    """
    if len(models) < 2:
        raise ConfigError(f"Expected at least two models to compare, but got {len(models)}")
    from tailscope.analysis.pipeline import analyze

    labels = _labels(models, names)
    reports = [m if isinstance(m, Report) else analyze(m, **options) for m in models]
    comp = Comparison(labels, reports)
    if plots is not None:
        comp.save_plots(plots)
    return comp
