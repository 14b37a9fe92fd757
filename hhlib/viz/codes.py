"""Plots: codes (see hhlib.viz)."""

__all__: list[str] = []
