"""Plots for the tutorials, one module per notebook topic; every function returns its Figure.

The plots only draw: the numbers they show come from :mod:`hhlib.analysis`, and every figure is
made by :func:`hhlib.viz._figure.figure`, in one style (docs/DESIGN.md, "Module map").

- :mod:`hhlib.viz.data`: splits and example images.
- :mod:`hhlib.viz.architecture`: the whole network, blocks, stages and what was loaded.
- :mod:`hhlib.viz.training`: the loss and the training curves.
- :mod:`hhlib.viz.evaluation`: precision-recall and precision@K curves.
- :mod:`hhlib.viz.codes`: bit statistics, distances and embeddings of codes.
- :mod:`hhlib.viz.centres`: the hash centres of central-similarity hashing.
- :mod:`hhlib.viz.families`: the three families of deep hashing, drawn.
"""

from hhlib.viz.architecture import *  # noqa: F401,F403
from hhlib.viz.centres import *  # noqa: F401,F403
from hhlib.viz.codes import *  # noqa: F401,F403
from hhlib.viz.data import *  # noqa: F401,F403
from hhlib.viz.evaluation import *  # noqa: F401,F403
from hhlib.viz.families import *  # noqa: F401,F403
from hhlib.viz.training import *  # noqa: F401,F403
