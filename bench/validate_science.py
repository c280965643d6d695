"""Validation of tailscope's numbers against planted answers: one table per property.

Each module in bench/science/ is a section: it defines `TITLE` and `run(quick: bool) -> str`
(a markdown table with a line saying what was planted and what must hold). The full run is what
the docs' validation tables record; `--quick` runs small sizes for a smoke check.

    PYTHONPATH=src python bench/validate_science.py            # every section, full size
    PYTHONPATH=src python bench/validate_science.py --quick --only coverage
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sections() -> dict[str, object]:
    """Every section module under bench/science/, by name."""
    found = {}
    for info in pkgutil.iter_modules([str(HERE / "science")]):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"science.{info.name}")
        if hasattr(module, "run"):
            found[info.name] = module
    return found


def main(argv: list[str] | None = None) -> int:
    available = sections()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke check")
    parser.add_argument("--only", action="append", choices=sorted(available),
                        help="run only this section (repeatable)")
    args = parser.parse_args(argv)
    chosen = args.only or sorted(available)
    print(f"# tailscope science validation, {datetime.date.today()}, "
          f"`python bench/validate_science.py{' --quick' if args.quick else ''}`\n")
    for name in chosen:
        module = available[name]
        t0 = time.perf_counter()
        table = module.run(args.quick)
        print(f"## {module.TITLE}\n\n{table}\n\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
