"""Tables, files and pictures of results. The report never fits."""

from tailscope.report.table import Description, Report

__all__ = ["Description", "Report"]
