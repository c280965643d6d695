"""Compare two or more models layer by layer: the aligned table (`compare`) and its plots."""
