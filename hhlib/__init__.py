"""hhlib: HybridHash (He & Wei, ICMR 2024) and the tools to train and evaluate it."""

from hhlib.losses import WeightedLikelihoodLoss
from hhlib.model import HybridHash, HybridHashConfig
from hhlib.weights import LoadReport, load_nest_weights, load_reference_weights

__version__ = "0.1.0"
