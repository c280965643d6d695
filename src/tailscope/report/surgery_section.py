"""The HTML report's section on a pruned or trap-removed checkpoint, read from its sidecar.

A checkpoint written by `tailscope.prune` or `tailscope.remove_traps` carries the sidecar JSON of
what was done; the report of that checkpoint shows the per-matrix table and a figure: alpha
against the allocated sparsity (pruning) or against the number of traps replaced (trap removal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tailscope.errors import InputError
from tailscope.untrusted.json_loader import MAX_INDEX_BYTES, read_json_file

# the sidecars `prune` and `remove_traps` write beside their checkpoint; read here, written by tailscope.surgery
PRUNE_SIDECAR = "tailscope_pruning.json"
TRAPS_SIDECAR = "tailscope_traps.json"

PRUNE_TABLE = ("layer", "name", "tensor", "role", "shape", "params", "alpha", "metric", "sparsity", "achieved")
TRAPS_TABLE = ("layer", "name", "tensor", "role", "shape", "num_traps", "traps_after", "ks_before", "ks_after", "rel_change")


def find_sidecars(source: str | Path) -> list[dict[str, Any]]:
    """The surgery sidecars next to an analyzed checkpoint (none for other sources)."""
    path = Path(str(source))
    folder = path if path.is_dir() else path.parent
    found = []
    for name in (PRUNE_SIDECAR, TRAPS_SIDECAR):
        if (folder / name).exists():
            try:
                found.append(read_json_file(folder / name, "the file", MAX_INDEX_BYTES))
            except InputError:  # not one we wrote: the report just has no surgery section
                continue
    return [s for s in found if isinstance(s, dict) and isinstance(s.get("tensors"), list)]


def sidecar_table(sidecar: dict[str, Any], details: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per edited matrix; a trap removal gets the analyzed model's alpha by tensor name."""
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "traps"} for r in sidecar["tensors"]])
    if sidecar["tool"] == "tailscope.remove_traps" and details is not None and "tensor" in table:
        alphas = details.drop_duplicates("longname").set_index("longname")["alpha"]
        table["alpha"] = table["tensor"].map(alphas)
    return table


def plot_surgery(sidecar: dict[str, Any], table: pd.DataFrame, ax: Any = None) -> Any:
    """Alpha against the allocated sparsity (or the traps replaced), one point per matrix by role."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 4.2))[1]
    pruning = sidecar["tool"] == "tailscope.prune"
    y = "sparsity" if pruning else "num_traps"
    for role, part in table.groupby("role"):
        ax.scatter(part["alpha"], part[y], s=14, alpha=0.6, label=f"{role} (its alpha)")
    if pruning:
        ax.axhline(sidecar["sparsity"], color="0.4", ls="--", lw=1, label=f"target {sidecar['sparsity']:g}")
        if sidecar.get("allocation") != "uniform":
            mapped = "block mean alpha" if sidecar["by"] == "block" else sidecar["metric"]
            line = table.drop_duplicates(["metric", "sparsity"]).sort_values("metric")
            ax.plot(line["metric"], line["sparsity"], "k-o", ms=3, lw=1, label=f"{mapped} (mapped)")
        ax.set_title(f"{sidecar['allocation']} allocation, {sidecar['method']} pruning")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("correlation traps replaced per matrix")
    ax.set_xlabel("alpha")
    ax.set_ylabel("allocated sparsity" if pruning else "traps replaced")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
