"""CNNH: target codes factorised from the similarity matrix, then a network regressing them.

Xia, Pan, Lai, Liu & Yan, "Supervised Hashing for Image Retrieval via Image
Representation Learning", AAAI 2014. Stage 1 finds approximate codes H for
the n training images, S_ij = +1 for a shared label and -1 otherwise:

    min over H in [-1, 1]^(n x K) of ||S - (1/K) H H^T||_F^2

by randomised coordinate descent, a clipped Newton step on one entry at a
time. Stage 2 trains the network to output each image's target code:

    L = mean over the batch and the bits of ((u + 1)/2 - (t + 1)/2)^2,  t = sign(H[ind])

CNNH+, the paper's variant whose output layer also predicts the labels, is
not implemented here.
"""

from __future__ import annotations

import numpy as np
import torch

from hhlib.methods.base import Method
from hhlib.quantize import binarize
from hhlib.relevance import relevant

__all__ = ["CNNH", "factorize_similarity", "factorization_objective"]


def _similarity_row(labels: np.ndarray, i: int) -> np.ndarray:
    """Row i of S: +1 where an image shares a label with image i, -1 elsewhere."""
    return np.where(labels @ labels[i] > 0, 1.0, -1.0)


def factorization_objective(h: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> float:
    """||S - H H^T / K||_F^2 / n^2, the stage-1 objective per pair, without forming an n x n matrix.

    S has entries +-1, so ||S||^2 = n^2 and the objective is
    n^2 - (2/K) tr(H^T S H) + ||H^T H||^2 / K^2, with S H = 2 A H - 1 1^T H for
    A the 0/1 relevance, a block of rows at a time.
    """
    h, labels = h.detach().double().cpu(), labels.double().cpu()
    n, k = h.shape
    column_sums = h.sum(0)
    trace = -float(column_sums @ column_sums)  # the -1 1^T part of tr(H^T S H)
    for start in range(0, n, chunk):
        a = relevant(labels[start : start + chunk], labels).double()
        trace += 2 * float((h[start : start + chunk] * (a @ h)).sum())
    return (n * n - 2 * trace / k + float((h.T @ h).square().sum()) / k**2) / n**2


def factorize_similarity(labels: torch.Tensor, bits: int, sweeps: int, seed: int = 0) -> tuple[torch.Tensor, list]:
    """Stage 1: relaxed codes H (n, bits) in [-1, 1] and the objective before and after each sweep.

    The paper's update of one entry H_ij, with R = H H^T - K S (its L) and
    f = ||R||_F^2 = K^2 ||S - H H^T / K||_F^2:

        f'  = 4 (R H)_ij,   f'' = 4 (||H_:j||^2 + H_ij^2 + R_ii),   H_ij <- clip(H_ij - f'/f'', -1, 1)

    R (n x n) is never formed: for a row i, (R H)_i = G_i H_i - K b_i + R_ii H_i
    with G_i = H^T H - H_i^T H_i and b_i = H^T S_:i - H_i^T S_ii, so after one
    O(nK) product per row each entry costs O(K). A sweep visits the rows in
    random order and the entries of each row in random order. One safeguard
    the paper does not state: a step that would raise f (the Newton step
    overshooting the quartic, or a non-positive f'') is not taken, so the
    objective never rises.
    """
    y = labels.detach().double().cpu().numpy()
    n, k = len(y), bits
    rng = np.random.default_rng(seed)
    h = rng.uniform(-1.0, 1.0, size=(n, k))
    history = []
    for sweep in range(sweeps + 1):
        history.append(factorization_objective(torch.from_numpy(h), labels))
        if sweep == sweeps:
            break
        hth = h.T @ h
        for i in rng.permutation(n):
            x = h[i].copy()
            s = _similarity_row(y, i)
            kii, s[i] = k * s[i], 0.0  # K S_ii (-K for an image without labels); b_i leaves out image i
            g = hth - np.outer(x, x)  # G_i
            c = g @ x - k * (h.T @ s)  # G_i H_i - K b_i: f'/4 without its R_ii term
            gd, xs = np.diagonal(g).tolist(), x.tolist()
            xx = float(x @ x)
            for j in rng.permutation(k).tolist():
                xj, cj, gjj = xs[j], float(c[j]), gd[j]
                r = xx - kii  # R_ii = ||H_i||^2 - K S_ii
                curvature = gjj + 2 * xj * xj + r  # f''/4, as ||H_:j||^2 = G_jj + H_ij^2
                if curvature <= 0:
                    continue
                d = min(max(-(cj + r * xj) / curvature, -1.0 - xj), 1.0 - xj)
                # the exact change of f: the other rows' terms, then the diagonal one
                if d == 0 or 4 * d * cj + 2 * d * d * gjj + (r + 2 * d * xj + d * d) ** 2 - r * r >= 0:
                    continue
                xs[j] = xj + d
                xx += 2 * d * xj + d * d
                c += d * g[j]
            x = np.array(xs)
            hth += np.outer(x, x) - np.outer(h[i], h[i])
            h[i] = x
    return torch.from_numpy(h), history


class CNNH(Method):
    """CNNH's two stages: factorise S into target codes, then regress them.

    Args:
        sweeps: stage-1 passes over all n x K entries of H. The paper's algorithm stops at a
            tolerance or after at most T iterations, values not found in the sources read for
            this module; DeepHash-pytorch's T = 10 is the default. On 5,000 single-label images
            at 64 bits the objective stops moving after about 3 sweeps.
        binary_targets: regress the signs of H (default, as DeepHash-pytorch and METHODS.md)
            rather than the relaxed H in [-1, 1].
        seed: seed of stage 1's random start (H uniform in [-1, 1]) and visiting order.

    The output is tanh: ``(tanh(z) + 1)/2 = sigmoid(2 z)``, so the loss equals the squared
    error of sigmoid outputs against the {0, 1} targets ``(t + 1)/2``, the last layer's
    weights absorbing the factor 2.
    """

    name = "cnnh"
    citation = (
        "Xia, Pan, Lai, Liu & Yan, Supervised Hashing for Image Retrieval via Image Representation Learning, AAAI 2014"
    )
    stages = (
        "stage 1: approximate codes H from the similarity matrix, ||S - H H^T / K||^2 by coordinate descent",
        "stage 2: train the network to regress each training image's code in H",
    )
    output = "tanh"

    def __init__(self, bits: int, *, sweeps: int = 10, binary_targets: bool = True, seed: int = 0) -> None:
        super().__init__(bits)
        if not isinstance(sweeps, int) or isinstance(sweeps, bool) or sweeps < 1:
            raise ValueError(f"sweeps must be a positive integer, got {sweeps!r}")
        self.sweeps, self.binary_targets, self.seed = sweeps, bool(binary_targets), int(seed)
        self.history: list = []  # stage 1's objective per pair, before and after each sweep
        self.register_buffer("H", torch.zeros(0, bits))

    def setup(self, labels: torch.Tensor) -> None:
        self.register_buffer("H", torch.zeros(len(labels), self.bits, device=labels.device))

    def prepare(self, labels: torch.Tensor) -> None:
        if labels.ndim != 2 or len(labels) != len(self.H):
            raise ValueError(
                f"labels must have shape ({len(self.H)}, num_classes) (the training set of setup), "
                f"got {tuple(labels.shape)}"
            )
        h, self.history = factorize_similarity(labels, self.bits, self.sweeps, self.seed)
        self.H.copy_(h.to(self.H.dtype))

    def targets(self, ind: torch.Tensor) -> torch.Tensor:
        """The regression targets of training images ``ind``: signs of H (or H itself)."""
        if len(ind) and (int(ind.min()) < 0 or int(ind.max()) >= len(self.H)):
            raise ValueError(
                f"ind must lie in [0, {len(self.H)}) (the training set of setup), "
                f"got values from {int(ind.min())} to {int(ind.max())}"
            )
        h = self.H[ind.to(self.H.device, torch.long)]
        if len(h) and not h.any():
            raise RuntimeError("CNNH's target codes are all zero: run prepare (stage 1) before training")
        return binarize(h) if self.binary_targets else h

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        t = self.targets(ind).to(u.dtype)
        return ((u - t) ** 2).mean() / 4  # = mean(((u + 1)/2 - (t + 1)/2)^2)
