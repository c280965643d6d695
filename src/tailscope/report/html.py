"""One self-contained HTML file per analysis (or comparison): opens offline, nothing fetched.

Plots are embedded as base64 PNG, the per-layer table sorts on a header click with a few lines of
inline JavaScript (numbers sort numerically, empty cells last), and every warning that occurs is
explained in one sentence.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from tailscope.errors import printable
from tailscope.outputs import atomic_write_text
from tailscope.report.surgery_section import PRUNE_TABLE, TRAPS_TABLE, find_sidecars, plot_surgery, sidecar_table
from tailscope.report.table import Report

TABLE_COLUMNS = ("layer_id", "name", "role", "layer", "expert", "shape", "alpha", "base_alpha", "alpha_weighted", "D",
                 "xmin", "num_pl_spikes", "lambda_max", "log_norm", "stable_rank", "status", "warning", "reason")

EXPLAIN = {
    "under-trained": "alpha > 6: the layer's eigenvalue tail is thin, close to random noise; the layer learned little "
                     "correlation from the data (or needs more training).",
    "over-trained": "alpha < 2: the tail is very heavy; the layer may be over-fitted or dominated by a few "
                    "directions (common in fine-tune deltas and LoRA updates, where that is expected).",
    "failed": "no spectrum or no power-law fit: the reason column says why (e.g. a zero matrix, such as an "
              "unchanged layer in a fine-tune delta, or too few eigenvalues above the threshold).",
    "degenerate": "no resolvable power-law tail (near-constant spectrum such as an orthogonal matrix, too few "
                  "distinct eigenvalues, or a tail of a handful of points): no alpha; the reason column says which.",
}

SCRIPT = """
function sortTable(th){
  const table=th.closest('table'), body=table.tBodies[0], idx=[...th.parentNode.children].indexOf(th);
  const asc=th.dataset.order!=='asc'; th.parentNode.querySelectorAll('th').forEach(h=>{delete h.dataset.order; h.classList.remove('asc','desc');});
  th.dataset.order=asc?'asc':'desc'; th.classList.add(asc?'asc':'desc');
  const key=tr=>{const c=tr.children[idx]; const v=c.dataset.v; return v===undefined?c.textContent:(v===''?null:parseFloat(v));};
  const rows=[...body.rows].sort((a,b)=>{const x=key(a), y=key(b);
    if(x===null&&y===null) return 0; if(x===null) return 1; if(y===null) return -1;
    const r=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y)); return asc?r:-r;});
  rows.forEach(r=>body.appendChild(r));
}
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
"""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px} h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
td.t,th.t{text-align:left} th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
th.asc::after{content:' \\25B2'} th.desc::after{content:' \\25BC'}
tr.under-trained td{background:#fff4e0} tr.over-trained td{background:#fde8e8} tr.failed td{color:#999}
img{max-width:100%;border:1px solid #eee;margin:6px} .muted{color:#777;font-size:12px}
"""


def _escape(text: Any) -> str:
    """HTML-escaped (quotes too: it also fills attributes), with non-printable characters written
    as escapes: a bidirectional override in a tensor name would reorder the page's text."""
    return html.escape(printable(str(text)))


def _fmt(v: Any) -> tuple[str, str | None]:
    """(text, sort value or None for text cells)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "", ""
    if isinstance(v, (bool, np.bool_)):
        return str(v), None
    if isinstance(v, (int, np.integer)):
        return str(int(v)), str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}", repr(float(v))
    return str(v), None


def table_html(df: pd.DataFrame, columns: Iterable[str], table_id: str, row_class: str | None = None) -> str:
    cols = [c for c in columns if c in df.columns]
    def is_text(c: str) -> bool:
        first = df[c].dropna()
        return bool(len(first)) and isinstance(first.iloc[0], str)

    head = "".join(f'<th class="{"t" if is_text(c) else ""}">{_escape(c)}</th>' for c in cols)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            text, v = _fmt(r[c])
            attr = f' data-v="{v}"' if v is not None else ' class="t"'
            cells.append(f"<td{attr}>{_escape(text)}</td>")
        cls = _escape(str(r.get(row_class) or "")) if row_class else ""
        if row_class and r.get("status") in ("failed", "degenerate"):
            cls = "failed"
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_escape(alt)}" src="data:image/png;base64,{data}">'


def _kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th class="t">{_escape(str(k))}</th><td class="t">{_escape(_fmt(v)[0])}</td></tr>' for k, v in pairs)
    return f"<table>{rows}</table>"


def _warnings(df: pd.DataFrame) -> str:
    counts = {}
    if "warning" in df:
        counts.update({w: int(n) for w, n in df["warning"].value_counts().items() if w})
    if "status" in df and (df["status"] == "failed").any():
        counts["failed"] = int((df["status"] == "failed").sum())
    if "status" in df and (df["status"] == "degenerate").any():
        counts["degenerate"] = int((df["status"] == "degenerate").sum())
    if not counts:
        return "<p>No warnings: every fitted layer has 2 &le; alpha &le; 6.</p>"
    items = "".join(f"<li><b>{_escape(w)}</b> ({n} layers): {_escape(EXPLAIN.get(w, ''))}</li>" for w, n in counts.items())
    return f"<ul>{items}</ul>"


def _plots(report: Report, label: str, tmp: Path) -> str:
    """The model-level figures of `tailscope.plots` (those the table has columns for), embedded."""
    from tailscope.plots.files import write_model_plots

    df = report.details
    if "status" not in df or not (df["status"] == "success").any():
        return "<p>No fitted layers to plot.</p>"
    files = write_model_plots(tmp, df, name=label)
    return "".join(_img(f, f.stem.removeprefix("model_").replace("_", " ")) for f in files)


def _surgery(sidecar: dict[str, Any], details: pd.DataFrame, tmp: Path) -> str:
    """What `prune` / `remove_traps` did to this checkpoint: settings, the figure, the per-matrix table."""
    import matplotlib.pyplot as plt

    pruning = sidecar["tool"] == "tailscope.prune"
    table = sidecar_table(sidecar, details)
    keys = ("sparsity", "allocation", "method", "by", "epsilon", "metric", "calibration") if pruning else ("seed",)
    settings = [("source", sidecar.get("source"))] + [(k, sidecar.get(k)) for k in keys if sidecar.get(k) is not None]
    ax = plot_surgery(sidecar, table)
    figure = tmp / ("surgery_prune.png" if pruning else "surgery_traps.png")
    ax.figure.tight_layout()
    ax.figure.savefig(figure, dpi=110)
    plt.close(ax.figure)
    title = "Pruning" if pruning else "Correlation traps removed"
    return "".join([f"<h2>{title}</h2>", _kv_table(settings + list(sidecar.get("summary", {}).items())),
                    _img(figure, title), table_html(table, PRUNE_TABLE if pruning else TRAPS_TABLE, title.split()[0].lower())])


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>")


def report_html(report: Report, model: Any = None) -> str:
    """The HTML text of a single-model report."""
    from tailscope.sources.archcard import model_card

    label = Path(report.source).name or "model"
    parts = [f"<h1>tailscope report: {_escape(report.source)}</h1>",
             '<p class="muted">Heavy-tailed self-regularization diagnostics from the weights alone. '
             "alpha is the power-law exponent of the tail of each layer's eigenvalue spectrum of W<sup>T</sup>W: "
             "2&ndash;6 is the usual range of well-trained layers (smaller = more strongly correlated). "
             "Click a column header to sort.</p>"]
    parts += ["<h2>Summary</h2>", _kv_table(report.summary.items())]
    card = model_card(model if model is not None else report.source)
    if card is not None:
        parts += ["<h2>Architecture</h2>", _kv_table(card.to_lines())]
    parts += ["<h2>Warnings</h2>", _warnings(report.details)]
    if report.skipped:
        parts.append("<p class=\"muted\">Skipped (not analyzed): " + _escape(", ".join(f"{n} {r}" for r, n in sorted(report.skip_counts.items()))) + "</p>")
    with tempfile.TemporaryDirectory() as tmp:
        parts += ["<h2>Plots</h2>", _plots(report, label, Path(tmp))]
        parts += [_surgery(sidecar, report.details, Path(tmp)) for sidecar in find_sidecars(report.source)]
    experts = report.experts
    if not experts.empty:
        parts += ["<h2>Experts</h2>", '<p class="muted">Per layer and role across experts; most trained = smallest alpha.</p>',
                  table_html(experts, experts.columns, "experts")]
    parts += [f"<h2>Layers ({len(report.details)})</h2>", table_html(report.details, TABLE_COLUMNS, "layers", row_class="warning")]
    return _page(f"tailscope: {label}", "".join(parts))


def write_html(report: Report, path: str | Path, model: Any = None) -> Path:
    """Write the self-contained HTML report of `report`."""
    return atomic_write_text(path, report_html(report, model))


def compare_html(comp: Any) -> str:
    """The HTML text of a comparison."""
    summary = comp.summary.reset_index().rename(columns={"index": "metric"})
    parts = [f"<h1>tailscope comparison: {_escape(', '.join(comp.labels))}</h1>",
             "<h2>Summary (means over fitted layers)</h2>", table_html(summary, summary.columns, "summary")]
    with tempfile.TemporaryDirectory() as tmp:
        files = comp.save_plots(tmp)
        parts += ["<h2>Plots</h2>"] + [_img(f, f.stem) for f in files]
    comp.plot_files = []
    from tailscope.sources.archcard import model_card

    cards = {lab: model_card(rep.source) for lab, rep in zip(comp.labels, comp.reports)}
    cards = {lab: c for lab, c in cards.items() if c is not None}
    if cards:
        by_lab = {lab: dict(c.to_lines()) for lab, c in cards.items()}
        keys = list(dict.fromkeys(k for d in by_lab.values() for k in d))
        rows = pd.DataFrame({"": keys, **{lab: [d.get(k, "") for k in keys] for lab, d in by_lab.items()}})
        parts += ["<h2>Architecture</h2>", table_html(rows, rows.columns, "cards")]
    for lab, rep in zip(comp.labels, comp.reports):
        parts += [f"<h3>Warnings: {_escape(lab)}</h3>", _warnings(rep.details)]
    m = comp.matched
    parts += [f"<h2>Matched layers ({len(m)})</h2>", table_html(m, m.columns, "matched")]
    return _page("tailscope comparison", "".join(parts))


def write_compare_html(comp: Any, path: str | Path) -> Path:
    return atomic_write_text(path, compare_html(comp))
