"""Fits of an eigenvalue spectrum. A fit never reads files."""

from .powerlaw import PowerLawFit, fit_power_law

__all__ = ["PowerLawFit", "fit_power_law"]
