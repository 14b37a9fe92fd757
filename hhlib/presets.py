"""The preset table: each way of training hhlib knows, in one place.

A :class:`Preset` names a model configuration, a training recipe (shared by
every method, with what a method needs of its own on top), the input size,
which datasets are augmented and how the network is initialised. The command line, run folders, tutorials and
benchmarks all read :data:`PRESETS` (docs/DESIGN.md, "Presets"); how the CPU
recipe was found is told in docs/cpu_preset.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hhlib.backbones import check_backbone
from hhlib.cnn import HashCNNConfig
from hhlib.model import HybridHashConfig
from hhlib.train import TrainConfig

__all__ = ["Preset", "PRESETS", "get_preset", "preset_configs"]


@dataclass(frozen=True)
class Preset:
    """One way to train: model, recipe, input size, augmentation, initialisation."""

    name: str
    model: Callable[..., HybridHashConfig]  # bits -> the HybridHash configuration
    recipe: dict  # TrainConfig fields that differ from its defaults (the paper's recipe), for every method
    img_size: int  # input side in pixels; images are resized to it
    dataset: str  # the dataset it is made for (benchmarks, the tutorial's default)
    initialisation: str  # "scratch", or "nest": ImageNet NesT-B weights (hhlib.weights), HybridHash backbone only
    # method, or (method, backbone) -> TrainConfig fields of its own under this preset (the pair's win)
    methods: dict[str | tuple[str, str], dict] = field(default_factory=dict)
    unaugmented: frozenset[str] = field(default_factory=frozenset)  # datasets trained without augmentation
    description: str = ""

    def model_config(self, bits: int, backbone: str = "hybridhash") -> HybridHashConfig | HashCNNConfig:
        """The configuration of ``backbone`` at ``bits`` bits and this preset's input size."""
        if check_backbone(backbone) == "cnn":
            return HashCNNConfig(bits=bits, img_size=self.img_size)
        return self.model(bits=bits, img_size=self.img_size)

    def train_config(self, method: str = "hybridhash", backbone: str = "hybridhash", **overrides) -> TrainConfig:
        """The recipe of ``method`` on ``backbone``, with ``overrides`` (TrainConfig fields) in place of its values.

        The common recipe, then the method's entry of :attr:`methods`, then the
        (method, backbone) entry; ``method_options`` are merged the same way.
        """
        layers = [self.recipe, self.methods.get(method, {}), self.methods.get((method, backbone), {}), overrides]
        options = {k: v for layer in layers for k, v in layer.get("method_options", {}).items()}
        fields = {k: v for layer in layers for k, v in layer.items() if k != "method_options"}
        return TrainConfig(**{**fields, "method": method, "method_options": options})

    def common_config(self, method: str = "hybridhash", **overrides) -> TrainConfig:
        """The recipe every method shares under this preset (no entry of :attr:`methods`): what runs are compared to."""
        return TrainConfig(**{**self.recipe, **overrides, "method": method})

    @property
    def quantizer(self) -> str:
        """The quantiser of HybridHash's own method under this preset."""
        return self.train_config().quantizer

    def augments(self, dataset: str) -> bool:
        """Whether the training split of ``dataset`` is augmented under this preset."""
        return dataset not in self.unaugmented


PRESETS: dict[str, Preset] = {
    "cpu": Preset(
        name="cpu",
        model=HybridHashConfig.cpu,
        # AdamW, warm-up, cosine decay and clipping: from scratch the model needs them to learn in minutes.
        recipe=dict(
            epochs=60,
            batch_size=32,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.05,
            schedule="cosine",
            warmup_epochs=2.0,
            grad_clip=1.0,
            ema_decay=0.998,
            eval_every=None,  # once, at the end: encoding 65,000 images costs several epochs
        ),
        img_size=32,
        dataset="fashion-mnist",
        initialisation="scratch",
        methods={
            # docs/cpu_preset.md: a bank of signs (section 2), smoothed targets and signs in a random basis (6)
            "hybridhash": dict(
                method_options=dict(alpha=1.0, binary_bank=True, smoothing=0.03),
                quantizer="rotation",
            ),
            # the paper's 50 outer iterations of 3 epochs on 2,000 database images: the images of 60 x 5,000
            "adsh": dict(epochs=150),
            # docs/methods.md: at 1e-3 DPSH's linear codes on this network sank to u = 0, where its
            # likelihood has no gradient (mAP 0.1002); at 3e-4 they learn
            ("dpsh", "hybridhash"): dict(lr=3e-4),
        },
        description="the 0.83 M-parameter model at 32 px, from scratch, about 13 minutes on 2 CPU cores",
    ),
    "paper": Preset(
        name="paper",
        model=HybridHashConfig.paper,
        recipe={},  # TrainConfig's defaults are the paper's recipe
        img_size=224,
        dataset="cifar10",
        initialisation="nest",
        unaugmented=frozenset({"cifar10", "cifar10-1", "cifar10-2"}),  # the paper augments the list datasets only
        description="the paper's 224 px model and recipe, from ImageNet NesT-B",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]


def preset_configs(
    name: str, bits: int, method: str = "hybridhash", backbone: str = "hybridhash", **overrides
) -> tuple[HybridHashConfig | HashCNNConfig, TrainConfig]:
    """The model configuration and the recipe of ``method`` under preset ``name`` at ``bits`` bits."""
    preset = get_preset(name)
    return preset.model_config(bits, backbone), preset.train_config(method, backbone, **overrides)
