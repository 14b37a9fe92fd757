"""Plots: training (see hhlib.viz)."""

__all__: list[str] = []
