"""The method interface: what the training engine asks of a deep hashing method.

A method owns its loss and whatever state the loss needs (a memory bank,
target codes, a continuation schedule), says how many stages it has and
how the database gets its codes, and may change the network's output (its
own head, or another activation) before training. :func:`hhlib.train.fit`
drives every method the same way (docs/DESIGN.md, "Methods and backbones"):

    method = METHODS[name](bits, **options)
    method.adapt(model)          # before the optimiser sees the parameters
    method.setup(train_labels)   # state sized to the training set (also on resume)
    method.prepare(train_labels) # stages before the network (fresh runs only)
    for each epoch: method.begin_epoch(epoch, epochs)
        for each batch of method.epoch_indices(epoch, n): loss = method(u, labels, indices)
        method.end_epoch(epoch)  # ADSH's discrete step on the database codes

"train" is the split the method trains on (``trains_on``): the training
split, or for ADSH the labelled database.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import torch
from torch import nn

from hhlib.model import HashModel
from hhlib.relevance import relevant

__all__ = ["Method", "ScaledTanh", "OUTPUTS"]


class ScaledTanh(nn.Module):
    """``tanh(scale * z)``: HashNet's continuation sharpens it towards sign as the scale grows.

    The scale is a buffer, so the network's checkpoint keeps the one it was trained to.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scale.to(z.dtype) * z)

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):g}"


# What the network's last layer may end in: a method names one in ``Method.output``.
OUTPUTS = {"tanh": nn.Tanh, "linear": nn.Identity, "scaled-tanh": ScaledTanh}


class Method(nn.Module):
    """A deep hashing method. Subclasses set the class attributes and write ``forward``.

    Hyper-parameters are the keyword arguments of ``__init__``, with the
    paper's values as defaults; :meth:`defaults` lists them and
    :meth:`options` gives the values of an instance, which is what a run
    records.
    """

    name: ClassVar[str]  # the registry key, e.g. "dpsh"
    citation: ClassVar[str]  # "Authors, Title, Venue Year"
    family: ClassVar[str] = "symmetric"  # "symmetric", "asymmetric" or "central"
    stages: ClassVar[tuple[str, ...]] = ("train the network on the loss",)
    database: ClassVar[str] = "network"  # "network": the database is encoded by the network; "learned": directly
    output: ClassVar[str] = "tanh"  # the activation the network's relaxed codes end in (OUTPUTS)
    trains_on: ClassVar[str] = "train"  # "train": the training split; "database": the labelled database (ADSH)

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits!r}")
        self.bits = bits

    @classmethod
    def defaults(cls) -> dict:
        """The hyper-parameters and their default (the paper's) values."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}

    def options(self) -> dict:
        """This instance's hyper-parameters (every key of :meth:`defaults`)."""
        return {name: getattr(self, name) for name in self.defaults()}

    def adapt(self, model: HashModel) -> None:
        """Fit the network's output to the method: by default set its activation to :attr:`output`."""
        if model.config.bits != self.bits:
            raise ValueError(f"the network makes {model.config.bits}-bit codes; this {self.name} has {self.bits} bits")
        model.activation = OUTPUTS[self.output]()

    def setup(self, labels: torch.Tensor) -> None:
        """Allocate the state sized to the training set; ``labels`` (num_train, num_classes) are 0/1."""

    def prepare(self, labels: torch.Tensor) -> None:
        """Run the stages that come before training the network (fresh runs only; resumed runs load them)."""

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (1-based) of ``epochs``: continuation schedules go here."""

    def epoch_size(self, n: int) -> int:
        """The number of items an epoch visits out of the ``n`` the method trains on (all, by default)."""
        return n

    def epoch_indices(self, epoch: int, n: int) -> torch.Tensor | None:
        """The items (of ``n``) that ``epoch`` visits, shuffled by the engine; None: all of them."""
        return None

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch's batches, inside its timing: steps that are not gradient steps go here."""

    def database_codes(self) -> torch.Tensor | None:
        """The database's codes when the method learns them directly (``database = "learned"``), else None."""
        return None

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        """The loss of relaxed codes ``u`` (B, bits) with 0/1 labels ``y`` (B, C) at training indices ``ind`` (B,)."""
        raise NotImplementedError

    def check_batch(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> None:
        """One clear error for a batch of the wrong shape."""
        if u.ndim != 2 or u.shape[1] != self.bits:
            raise ValueError(f"u must have shape (B, {self.bits}), got {tuple(u.shape)}")
        if y.ndim != 2 or y.shape[0] != u.shape[0]:
            raise ValueError(f"y must have shape ({u.shape[0]}, num_classes) to match u, got {tuple(y.shape)}")
        if ind.ndim != 1 or ind.shape[0] != u.shape[0]:
            raise ValueError(f"ind must have shape ({u.shape[0]},), got {tuple(ind.shape)}")

    def register_bank(self, labels: torch.Tensor) -> None:
        """A memory bank of the latest code ``U`` and label ``Y`` of every training image, zero until written.

        Buffers, so they travel with the checkpoint; rows not yet written
        count as dissimilar pairs with a zero code, as in the HybridHash authors' code.
        """
        self.register_buffer("U", torch.zeros(len(labels), self.bits))
        self.register_buffer("Y", torch.zeros(len(labels), labels.shape[1]))

    def update_bank(self, codes: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        """Write ``codes`` and ``y`` at ``ind``; return the similarity (B, num_train) of the batch to the bank."""
        if len(ind) and (int(ind.min()) < 0 or int(ind.max()) >= len(self.U)):
            raise ValueError(
                f"ind must lie in [0, {len(self.U)}) (the memory bank size), "
                f"got values from {int(ind.min())} to {int(ind.max())}"
            )
        ind = ind.to(self.U.device, torch.long)
        self.U[ind] = codes.detach().to(self.U.dtype)
        self.Y[ind] = y.to(self.Y.dtype)
        return relevant(y.to(self.Y.dtype), self.Y).float()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in {"bits": self.bits, **self.options()}.items())
