"""Plots: architecture (see hhlib.viz)."""

__all__: list[str] = []
