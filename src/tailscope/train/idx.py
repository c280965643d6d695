"""Reader for the IDX files of MNIST / Fashion-MNIST (users bring the files; nothing is downloaded).

IDX layout (LeCun): two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), a byte with the number of dimensions, then each dimension as a
big-endian uint32, then the data, big-endian. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tailscope.errors import InputError
from tailscope.untrusted.regular_files import open_regular

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file (gzip allowed)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such IDX file")
    try:
        with open_regular(path) as fh:  # a FIFO fails here instead of blocking
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError(path, "not an IDX file (the first two bytes must be zero)")
    dtype = _DTYPES.get(raw[2])
    if dtype is None:
        raise InputError(path, f"unknown IDX data type byte 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InputError(path, f"truncated IDX header ({ndim} dimensions declared, {len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * np.dtype(dtype).itemsize
    if len(raw) - header != expected:
        raise InputError(path, f"IDX data has {len(raw) - header} bytes, the header {dims} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(np.dtype(dtype).newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise InputError(directory, f"missing {stem}[.gz] (MNIST/Fashion-MNIST IDX files are expected here)")


def load_mnist(directory: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images as float32 rows scaled to [0, 1], int64 labels) of the ``train`` or ``test`` split.

    The directory holds the standard files, e.g. ``train-images-idx3-ubyte[.gz]`` and
    ``t10k-labels-idx1-ubyte[.gz]`` (MNIST and Fashion-MNIST use the same names).
    """
    directory = Path(directory)
    if split not in _SPLITS:
        raise InputError(directory, f"unknown split {split!r}: expected 'train' or 'test'")
    if not directory.is_dir():
        raise InputError(directory, "not a directory of IDX files")
    prefix = _SPLITS[split]
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise InputError(images_path, f"expected 3 dimensions (n, rows, cols), found shape {images.shape}")
    if labels.ndim != 1:
        raise InputError(labels_path, f"expected 1 dimension (n,), found shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise InputError(labels_path, f"{labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return (images.reshape(images.shape[0], -1).astype(np.float32) / scale), labels.astype(np.int64)
