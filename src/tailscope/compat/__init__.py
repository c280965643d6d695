"""A drop-in facade for weightwatcher 0.7.7: `import tailscope.compat as ww; ww.WeightWatcher(model=m)`.

The facade maps weightwatcher's keywords and columns onto tailscope's; see `facade` for the table.
"""

from tailscope.compat import facade as weightwatcher  # `from tailscope.compat import weightwatcher as ww`
from tailscope.compat.facade import KEYWORDS, SMOOTH_METHODS, SingleLayerModel, WeightWatcher, translate, ww_columns

__all__ = ["KEYWORDS", "SMOOTH_METHODS", "SingleLayerModel", "WeightWatcher", "translate", "weightwatcher", "ww_columns"]
