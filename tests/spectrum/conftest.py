"""The fp32 Gram route is off by default (`tailscope.spectrum.routes.FP32_GRAM`); its tests switch it on."""

from __future__ import annotations

import pytest


@pytest.fixture
def fp32_gram(monkeypatch):
    import tailscope.spectrum.routes as routes

    monkeypatch.setattr(routes, "FP32_GRAM", True)
