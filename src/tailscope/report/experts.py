"""Mixture-of-experts view: one summary row per (layer, role) across that layer's experts.

In HTSR a smaller alpha means a more strongly correlated (better trained) matrix, so the "most
trained" expert is the one with the smallest alpha and the "least trained" the one with the
largest. The router (gate) matrix of each layer is shown beside its experts: it is often too
small to fit (Mixtral-8x7B's router is 8 x 4096, so 8 eigenvalues), in which case the note says
why it was skipped.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tailscope.errors import printable
from tailscope.report.printing import printable_frame

EXPERT_COLUMNS = (
    "layer", "role", "n_experts", "alpha_mean", "alpha_std", "alpha_min", "alpha_max",
    "most_trained_expert", "least_trained_expert", "n_failed", "router_shape", "router_alpha", "router_note",
)


def _routers(details: pd.DataFrame, skipped: list[tuple[Any, str]]) -> dict[Any, tuple[str, float, str]]:
    """layer -> (shape, alpha or NaN, note) for every router matrix, fitted or skipped."""
    out: dict[Any, tuple[str, float, str]] = {}
    if "role" in details:
        for _, row in details[details["role"] == "router"].iterrows():
            out[_key(row["layer"])] = (row["shape"], float(row.get("alpha", float("nan"))), str(row.get("status", "")))
    for ref, reason in skipped:
        if getattr(ref, "role", None) == "router":
            out[_key(ref.layer)] = ("x".join(map(str, ref.shape)), float("nan"), f"skipped: {reason}")
    return out


def _key(layer: Any) -> int | None:
    return None if pd.isna(layer) else int(layer)


def expert_summary(details: pd.DataFrame, skipped: list[tuple[Any, str]] | None = None) -> pd.DataFrame:
    """Per-layer, per-role statistics of alpha across experts (empty when there are none)."""
    if details.empty or "expert" not in details or details["expert"].isna().all():
        return pd.DataFrame(columns=list(EXPERT_COLUMNS))
    routers = _routers(details, skipped or [])
    experts = details[details["expert"].notna()]
    rows = []
    for (layer, role), group in experts.groupby(["layer", "role"], sort=True, dropna=False):
        ok = group[group["status"] == "success"] if "status" in group else group
        alpha = ok["alpha"].astype(float) if "alpha" in ok else pd.Series(dtype=float)
        shape, r_alpha, note = routers.get(_key(layer), ("", float("nan"), "no router found"))
        rows.append({
            "layer": layer, "role": role, "n_experts": int(group["expert"].nunique()),
            "alpha_mean": alpha.mean(), "alpha_std": alpha.std(ddof=0), "alpha_min": alpha.min(),
            "alpha_max": alpha.max(),
            "most_trained_expert": int(ok.loc[alpha.idxmin(), "expert"]) if len(alpha.dropna()) else None,
            "least_trained_expert": int(ok.loc[alpha.idxmax(), "expert"]) if len(alpha.dropna()) else None,
            "n_failed": int(len(group) - len(ok)), "router_shape": shape, "router_alpha": r_alpha,
            "router_note": note,
        })
    table = pd.DataFrame(rows, columns=list(EXPERT_COLUMNS))
    table["layer"] = table["layer"].astype("Int64")
    return table


def experts_text(table: pd.DataFrame) -> str:
    """The terminal view of the expert summary."""
    cols = ["layer", "role", "n_experts", "alpha_mean", "alpha_min", "alpha_max", "most_trained_expert", "least_trained_expert"]
    lines = ["experts (per layer and role; most trained = smallest alpha):"]
    lines.append(printable_frame(table[cols]).to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    routers = table.drop_duplicates("layer")[["layer", "router_shape", "router_alpha", "router_note"]]
    lines.append("routers: " + printable("; ".join(
        f"layer {r.layer} {r.router_shape or '?'} "
        + (f"alpha {r.router_alpha:.3f}" if pd.notna(r.router_alpha) else r.router_note)
        for r in routers.itertuples()
    )))
    return "\n".join(lines)
