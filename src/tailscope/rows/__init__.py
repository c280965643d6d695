"""One result row per matrix: the fitted columns (`diagnostics`) and the norm and rank metrics
(`metrics`). Rows are what the report stage stores, prints and plots.
"""
