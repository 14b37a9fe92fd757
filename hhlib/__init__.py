"""hhlib: HybridHash (He & Wei, ICMR 2024) and the tools to train and evaluate it."""

from hhlib.hamming import hamming_distances, pack_codes
from hhlib.index import HammingIndex
from hhlib.losses import WeightedLikelihoodLoss
from hhlib.metrics import mean_average_precision, precision_at_k, precision_recall_curve, precision_within_radius
from hhlib.model import HybridHash, HybridHashConfig
from hhlib.train import TrainConfig, fit
from hhlib.weights import LoadReport, load_nest_weights, load_reference_weights

__all__ = [
    "HammingIndex",
    "HybridHash",
    "HybridHashConfig",
    "LoadReport",
    "TrainConfig",
    "WeightedLikelihoodLoss",
    "fit",
    "hamming_distances",
    "load_nest_weights",
    "load_reference_weights",
    "mean_average_precision",
    "pack_codes",
    "precision_at_k",
    "precision_recall_curve",
    "precision_within_radius",
]
__version__ = "0.1.0"
