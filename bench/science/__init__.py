"""Sections of bench/validate_science.py: one module per validated property."""
