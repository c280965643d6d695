"""Fits of an eigenvalue spectrum. A fit never reads files."""

from tailscope.fit.powerlaw import PowerLawFit, fit_power_law

__all__ = ["PowerLawFit", "fit_power_law"]
