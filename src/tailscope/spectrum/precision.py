"""Precision thresholds shared by the numpy and torch routes (kept here so neither route imports the other)."""

GRAM_RELATIVE_FLOOR = 1e-12  # below this * lambda_max a Gram eigenvalue has lost its relative accuracy: use SVD
