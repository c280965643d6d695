"""Eigenvalues of W^T W for one matrix: the numpy routes, the torch route and the matrix transforms.

A spectrum never fits and never reads files: it takes an array and returns eigenvalues.
"""
