"""Tests run the notebooks in fast mode (tiny splits, one epoch) unless HH_FAST is set.

``HH_FAST=0 pytest notebooks/`` executes them in full mode instead. The
kernels nbval starts inherit this environment.
"""

import os

os.environ.setdefault("HH_FAST", "1")
