"""One lazy `__getattr__` for the subpackages, so importing a package imports none of its heavy modules."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `package.<table[name]>` on first use of `name`.

    >>> getattr_ = lazy_getattr("tailscope", {"fit_power_law": "fit.powerlaw"})
    >>> getattr_("fit_power_law").__name__
    'fit_power_law'
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name in table:
            value = getattr(importlib.import_module(f"{package}.{table[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
