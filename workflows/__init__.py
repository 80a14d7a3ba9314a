"""Deterministic workflow code only: no I/O, no clocks, no randomness but Temporal's."""
