"""Tables, files and pictures of results. The report never fits."""

from .table import Description, Report

__all__ = ["Description", "Report"]
