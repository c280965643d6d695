"""A reduced run of examples/double_descent.py: the test error peaks near P/N = 1."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "double_descent.py"


def load_example():
    spec = importlib.util.spec_from_file_location("double_descent", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_error_peaks_near_interpolation_threshold_and_figure_renders(tmp_path):
    dd = load_example()
    points = dd.sweep(loads=(0.3, 0.6, 0.9, 1.0, 1.1, 1.5, 2.5), n=60, seeds=3)
    errors = np.array([p.test_error for p in points])
    peak = points[int(np.argmax(errors))]
    assert 0.8 <= peak.load <= 1.25, [(p.load, p.test_error) for p in points]
    assert errors[-1] < errors.max() - 0.1  # the second descent
    alphas = {p.load: p.alpha for p in points}
    assert np.isfinite(list(alphas.values())).all()
    assert alphas[1.0] < alphas[0.3] and alphas[1.0] < alphas[2.5]  # heaviest inverse tail at the threshold
    assert len(dd.verdict(points)) == 3
    out = tmp_path / "dd.png"
    dd.plot(points, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
