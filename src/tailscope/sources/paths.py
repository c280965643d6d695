"""What "inside the model directory" means, for reading weights and for copying side files.

The model directory is the folder the user names, with its own path resolved (naming a link to a
folder is the user's choice). A file found in it (a listed shard, an index, adapter weights, a
tokenizer to copy) is used only if its real path, every symlink resolved, lies inside that
folder, with one exception: in a Hugging Face cache snapshot, ``<repo>/snapshots/<rev>/``, each
file is a link to ``../../blobs/<hash>``, so a file directly in ``<repo>/blobs`` (a real
folder, not a link) counts as inside too. A link anywhere else, a ``../`` shard name, or an
absolute one is refused: a link to a secret must neither be read nor end up in an output that
users share.
"""

from __future__ import annotations

from pathlib import Path

from tailscope.errors import InputError


def snapshot_blobs(real_root: Path) -> Path | None:
    """The cache's ``blobs`` folder when `real_root` is a Hugging Face cache snapshot, else None."""
    blobs = real_root.parent.parent / "blobs"
    if real_root.parent.name == "snapshots" and blobs.is_dir() and not blobs.is_symlink():
        return blobs
    return None


def is_inside(real_root: Path, resolved: Path) -> bool:
    """Whether a fully resolved path belongs to the model whose resolved folder is `real_root`."""
    if resolved.is_relative_to(real_root):
        return True
    blobs = snapshot_blobs(real_root)
    return blobs is not None and resolved.parent == blobs


def inside(root: Path, candidate: Path) -> Path:
    """The real path of `candidate`, refused when it lies outside the model directory `root`."""
    try:
        resolved = candidate.resolve()
        real_root = root.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # NUL byte, name too long, symlink loop
        raise InputError(candidate, f"cannot resolve the path ({type(exc).__name__}: {exc})") from None
    if not is_inside(real_root, resolved):
        raise InputError(candidate, f"resolves outside the model directory {root} ({resolved}); refusing to read it")
    return resolved
