"""CSQ: every code pulled towards its class's hash centre by a binary cross-entropy, plus quantisation.

Yuan, Wang, Zhang, Tay, Jie, Liu & Feng, "Central Similarity Quantization
for Efficient Image and Video Retrieval", CVPR 2020. Each class has a
centre in {-1, +1}^K far from the others (:func:`hhlib.methods.centres.hash_centres`);
an image's centre c_i is its class's, or for several labels the sign of
their sum. With h = (u + 1) / 2 and t = (c + 1) / 2 in [0, 1]:

    L = mean_i [ -(1/K) sum_k (t_ik log h_ik + (1 - t_ik) log(1 - h_ik)) + lambda (1/K) sum_k (|u_ik| - 1)^2 ]

One term per image instead of one per pair: the centres carry the
similarity, so a batch needs no memory bank and no pairs. The authors' code
(yuanli2333/Hadamard-Matrix-for-hashing, ``train.py``) adds a pairwise
likelihood between the two halves of each batch (``lambda1`` 0.2); that
term is not in the objective above and hhlib leaves it out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hhlib.methods.base import Method
from hhlib.methods.centres import KINDS, hash_centres, label_centres

__all__ = ["CSQ", "CentralMethod"]


class CentralMethod(Method):
    """The state of a central-similarity method: a centre per class and a fixed tie-breaking code.

    Buffers, so a checkpoint keeps the centres a run trained towards; they
    are made in :meth:`prepare` (a stage of their own) and loaded on resume.
    """

    family = "central"
    output = "tanh"
    centre_kinds: tuple[str, ...] = ("auto", *KINDS)

    def _init_centres(self, centres: str, seed: int) -> None:
        if centres not in self.centre_kinds:
            raise ValueError(f"centres must be one of {list(self.centre_kinds)}, got {centres!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.centres, self.seed = centres, seed

    def centre_kind(self, num_classes: int) -> str:
        """The kind of centres used for ``num_classes`` classes ("auto": CSQ's rule, Hadamard where it fits)."""
        if self.centres != "auto":
            return self.centres
        fits = not self.bits & (self.bits - 1) and num_classes <= 2 * self.bits
        return "hadamard" if fits else "bernoulli"

    def setup(self, labels: torch.Tensor) -> None:
        self.register_buffer("class_centres", torch.zeros(labels.shape[1], self.bits))
        self.register_buffer("tie", torch.ones(self.bits))

    def prepare(self, labels: torch.Tensor) -> None:
        num_classes = labels.shape[1]
        centres = hash_centres(num_classes, self.bits, self.centre_kind(num_classes), seed=self.seed)
        generator = torch.Generator().manual_seed(self.seed + 1)
        self.class_centres.copy_(centres)
        self.tie.copy_(torch.randint(0, 2, (self.bits,), generator=generator) * 2.0 - 1)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """The centre (B, bits) of each image with 0/1 labels ``y`` (B, C)."""
        if not self.class_centres.abs().sum():
            raise RuntimeError(f"{self.name} has no centres yet: call prepare(labels) first (fit does)")
        return label_centres(y, self.class_centres, self.tie)


class CSQ(CentralMethod):
    """Central similarity quantisation: binary cross-entropy towards each image's hash centre.

    Args:
        lam: lambda, the weight of the quantisation term (0.05: ``lambda2``
            of the authors' ``options.py``; DeepHash-pytorch's CSQ uses 1e-4).
        centres: "auto" (the paper: rows of a Hadamard matrix and their
            negations when bits is a power of 2 and there are at most
            2 * bits classes, balanced random codes otherwise), or a kind of
            :func:`hash_centres`.
        seed: the seed of random centres and of the tie-breaking code.
    """

    name = "csq"
    citation = (
        "Yuan, Wang, Zhang, Tay, Jie, Liu & Feng, Central Similarity Quantization "
        "for Efficient Image and Video Retrieval, CVPR 2020"
    )
    stages = ("choose a hash centre for every class", "train the network towards its images' centres")

    def __init__(self, bits: int, *, lam: float = 0.05, centres: str = "auto", seed: int = 0) -> None:
        super().__init__(bits)
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise ValueError(f"lam must be a non-negative number, got {lam!r}")
        self.lam = float(lam)
        self._init_centres(centres, seed)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        target = (self.targets(y).to(u.dtype) + 1) / 2  # (B, bits) in {0, 1}
        centre = F.binary_cross_entropy((u + 1) / 2, target)  # mean over images and bits; log clamped at -100
        return centre + self.lam * (u.abs() - 1).pow(2).mean()
