"""Plots: evaluation (see hhlib.viz)."""

__all__: list[str] = []
