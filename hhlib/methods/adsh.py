"""ADSH: a query network against database codes learned directly, by discrete cyclic coordinate descent.

Jiang & Li, "Asymmetric Deep Supervised Hashing", AAAI 2018. The network
encodes only queries; the codes V in {-1, +1}^(n x K) of the n labelled
database images are variables of their own. Each outer iteration samples
m database images Omega, trains the network on them for a few epochs with
V fixed, then updates V with the network fixed:

    min  sum_{i in Omega} sum_j (u_i . v_j - K S_ij)^2 + gamma sum_{i in Omega} ||v_i - u_i||^2

with S_ij = 1 for images sharing a label and -r otherwise (r the ratio of
similar to dissimilar pairs, the authors' code's soft constraint). The V
step, with U the codes of Omega and Ubar holding u_i at the rows of Omega:
Q = -2K S^T U - 2 gamma Ubar, then bit by bit
V[:, k] = -sign(2 V_{-k} U_{-k}^T U[:, k] + Q[:, k]) (:func:`dcc_step`, :func:`dcc_bit`).

It trains on the database (``trains_on = "database"``), so it uses the
database's labels, which the symmetric methods never see: a difference of
protocol that runs state. The database is encoded by V, not the network.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from hhlib.methods.base import Method
from hhlib.relevance import relevant

__all__ = ["ADSH", "dcc_step", "dcc_bit", "soft_similarity"]

BLOCK = 8192  # database rows per block: the similarity is never held for the whole database


def soft_similarity(a: torch.Tensor, b: torch.Tensor, r: float) -> torch.Tensor:
    """S (A, B): 1 where rows of 0/1 labels ``a`` and ``b`` share a label, -r elsewhere."""
    return torch.where(relevant(a, b), 1.0, -r).to(torch.float32)


def dcc_step(V: torch.Tensor, U: torch.Tensor, Q: torch.Tensor) -> None:
    """One sweep of discrete cyclic coordinate descent over the bits of ``V`` (n, K), in place."""
    G = U.T @ U  # (K, K)
    for k in range(V.shape[1]):
        dcc_bit(V, G, Q, k)


def dcc_bit(V: torch.Tensor, G: torch.Tensor, Q: torch.Tensor, k: int) -> None:
    """Bit k of ``V`` becomes -sign(2 V_{-k} U_{-k}^T U_k + Q_k), ``G = U^T U``; a zero takes +1.

    With the other bits fixed this minimises ||U V^T||^2 + tr(V Q^T), which is
    ADSH's objective in V up to a constant, row by row.
    """
    others = V.to(G.dtype) @ G[:, k] - V[:, k].to(G.dtype) * G[k, k]  # V_{-k} U_{-k}^T U_k
    V[:, k] = torch.where(2 * others + Q[:, k] > 0, -1, 1).to(V.dtype)


class ADSH(Method):
    """Asymmetric deep supervised hashing: a query network, database codes by coordinate descent.

    An engine epoch is one of the ``inner_epochs`` passes over a sample;
    every ``inner_epochs`` epochs a new sample is drawn after the V step,
    so the paper's 50 outer iterations of 3 epochs are 150 engine epochs;
    the last epoch ends with a V step whatever the count.

    Args:
        gamma: weight of ||v_i - u_i||^2 (200: the paper and the authors' code).
        samples: m, database images sampled per outer iteration (2,000: both).
        inner_epochs: epochs of network training per outer iteration (3: both).
        seed: the seed of the samples.
    """

    name = "adsh"
    citation = "Jiang & Li, Asymmetric Deep Supervised Hashing, AAAI 2018"
    family = "asymmetric"
    database = "learned"
    trains_on = "database"
    output = "tanh"  # the authors' networks end in tanh
    stages = ("alternate: train the query network on sampled database images, then learn the database codes",)

    def __init__(
        self, bits: int, *, gamma: float = 200.0, samples: int = 2000, inner_epochs: int = 3, seed: int = 0
    ) -> None:
        super().__init__(bits)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
            raise ValueError(f"gamma must be a non-negative number, got {gamma!r}")
        for name, value in (("samples", samples), ("inner_epochs", inner_epochs), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer")
        self.gamma, self.samples, self.inner_epochs, self.seed = float(gamma), samples, inner_epochs, seed

    def setup(self, labels: torch.Tensor) -> None:
        n = len(labels)
        # V in a memory-mapped file (deleted on exit): a large database's codes stay on disk, paged in as used
        self._file = tempfile.TemporaryFile(prefix="adsh-V-")  # noqa: SIM115 (open as long as the method)
        self.register_buffer("V", torch.from_numpy(np.memmap(self._file, np.int8, "w+", shape=(n, self.bits))))
        self.register_buffer("Y", labels.float(), persistent=False)  # the database's labels, given on every setup
        self.register_buffer("U", torch.zeros(self.epoch_size(n), self.bits))  # the sample's latest codes
        self._sample_of = None  # (outer iteration, sample, position of each database row in it or -1, r)

    def epoch_size(self, n: int) -> int:
        return min(self.samples, n)

    def _sample(self, epoch: int) -> tuple:
        """The outer iteration of ``epoch`` (1-based), its sample of the database, positions and r."""
        outer = (epoch - 1) // self.inner_epochs
        if self._sample_of is None or self._sample_of[0] != outer:
            n = len(self.Y)
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + outer)
            sample = torch.randperm(n, generator=generator)[: self.epoch_size(n)]
            position = torch.full((n,), -1, dtype=torch.long)
            position[sample] = torch.arange(len(sample))
            similar = sum(int(relevant(self.Y[sample], self.Y[i : i + BLOCK]).sum()) for i in range(0, n, BLOCK))
            r = similar / max(len(sample) * n - similar, 1)
            self._sample_of = (outer, sample, position.to(self.V.device), r)
        return self._sample_of

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        self._epoch, self._epochs = epoch, epochs

    def epoch_indices(self, epoch: int, n: int) -> torch.Tensor:
        return self._sample(epoch)[1]

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        _, _, position, r = self._sample(getattr(self, "_epoch", 1))
        ind = ind.to(self.V.device, torch.long)
        where = position[ind]
        if (where < 0).any():
            raise ValueError("ind must be database rows of this epoch's sample (ADSH.epoch_indices)")
        self.U[where] = u.detach().to(self.U.dtype)
        V = self.V.to(u.dtype)
        square = (u @ V.T - self.bits * soft_similarity(y, self.Y, r).to(u.dtype)).pow(2).sum()
        quantization = self.gamma * (V[ind] - u).pow(2).sum()
        return (square + quantization) / (len(self.V) * max(len(u), 1))

    def end_epoch(self, epoch: int) -> None:
        """After the last epoch of an outer iteration, and of training, the V step, block by block of the database."""
        if epoch % self.inner_epochs and epoch != getattr(self, "_epochs", None):
            return
        _, sample, position, r = self._sample(epoch)
        U = self.U.float()
        for i in range(0, len(self.V), BLOCK):
            rows = slice(i, i + BLOCK)
            Ubar = torch.where(position[rows, None] >= 0, U[position[rows].clamp(min=0)], 0.0)
            Q = -2 * self.bits * soft_similarity(self.Y[rows], self.Y[sample], r) @ U - 2 * self.gamma * Ubar
            block = self.V[rows].clone()
            dcc_step(block, U, Q)
            self.V[rows] = block

    def database_codes(self) -> torch.Tensor:
        return self.V
