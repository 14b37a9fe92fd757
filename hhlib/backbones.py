"""The backbones a hashing method can train: HybridHash, and a plain CNN to compare against.

Both are :class:`hhlib.model.HashModel`: features, a hash head, an
activation and a quantiser. A checkpoint names its backbone and holds its
configuration, which is all :func:`build_model` needs to rebuild it.
"""

from __future__ import annotations

from hhlib.cnn import HashCNN, HashCNNConfig
from hhlib.model import HashModel, HybridHash, HybridHashConfig

__all__ = ["BACKBONES", "build_model", "backbone_name", "check_backbone"]

# name -> (network class, its configuration class)
BACKBONES: dict[str, tuple[type[HashModel], type]] = {
    "hybridhash": (HybridHash, HybridHashConfig),
    "cnn": (HashCNN, HashCNNConfig),
}


def check_backbone(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
    return name


def build_model(name: str, config: dict | object) -> HashModel:
    """The backbone ``name`` built from its configuration (a dataclass or its ``to_dict()``)."""
    network, config_class = BACKBONES[check_backbone(name)]
    return network(config if isinstance(config, config_class) else config_class(**config))


def backbone_name(model: HashModel) -> str:
    """The registry name of ``model``'s backbone."""
    for name, (network, _) in BACKBONES.items():
        if type(model) is network:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered backbone ({sorted(BACKBONES)})")
