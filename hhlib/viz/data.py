"""Plots: data (see hhlib.viz)."""

__all__: list[str] = []
