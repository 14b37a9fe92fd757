"""Hash centres: one well-separated binary code per class, the targets of central-similarity hashing.

CSQ (Yuan et al., "Central Similarity Quantization for Efficient Image and
Video Retrieval", CVPR 2020) takes the rows of a Hadamard matrix and their
negations, any two of which differ in exactly half their bits, or balanced
random ("Bernoulli") codes when there are more classes than that. MDSHC
(Wang et al., "Deep Hashing with Minimal-Distance-Separated Hash Centers",
CVPR 2023) optimises the centres so that the closest two lie as far apart
as the coding bounds allow. hhlib's optimiser is a local search of single
bit flips (:func:`separate`); docs/methods.md, "Hash centres", explains it
and reports what it reaches.
"""

from __future__ import annotations

import math

import torch
from scipy.linalg import hadamard

__all__ = [
    "KINDS",
    "hash_centres",
    "hadamard_centres",
    "bernoulli_centres",
    "separate",
    "centre_distances",
    "distance_summary",
    "code_bounds",
    "label_centres",
]

KINDS = ("hadamard", "bernoulli", "min-distance")


def _check(num_classes: int, bits: int) -> None:
    for name, value in (("num_classes", num_classes), ("bits", bits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def hash_centres(num_classes: int, bits: int, kind: str = "hadamard", seed: int = 0) -> torch.Tensor:
    """``num_classes`` centres of ``bits`` bits in {-1, +1}, float32 (num_classes, bits).

    ``kind`` is "hadamard" (needs bits a power of 2 and at most 2 * bits
    classes), "bernoulli" (each centre a random code with half its bits -1)
    or "min-distance": :func:`separate` run from the Bernoulli centres of
    the same seed and, where they exist, from the Hadamard ones (MDSHC starts
    from CSQ's centres); the better result, never worse than either start.
    """
    _check(num_classes, bits)
    if kind == "hadamard":
        return hadamard_centres(num_classes, bits)
    generator = torch.Generator().manual_seed(seed)
    if kind == "bernoulli":
        return bernoulli_centres(num_classes, bits, generator)
    if kind == "min-distance":
        starts = [bernoulli_centres(num_classes, bits, generator)]
        if not bits & (bits - 1) and num_classes <= 2 * bits:
            starts.append(hadamard_centres(num_classes, bits))
        found = [separate(start, generator=generator) for start in starts]
        return max(found, key=lambda c: _key(centre_distances(c).fill_diagonal_(2 * bits)))
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def hadamard_centres(num_classes: int, bits: int) -> torch.Tensor:
    """The rows of the bits x bits Hadamard matrix H, then of -H, as CSQ takes them: any two differ in bits/2 bits."""
    _check(num_classes, bits)
    if bits & (bits - 1):
        raise ValueError(f"Hadamard centres need bits to be a power of 2, got {bits}; use kind='bernoulli'")
    if num_classes > 2 * bits:
        raise ValueError(
            f"{bits} bits give at most {2 * bits} Hadamard centres, not {num_classes}; use kind='bernoulli'"
        )
    rows = torch.from_numpy(hadamard(bits)).float()  # Sylvester's construction, +-1
    return torch.cat([rows, -rows])[:num_classes]


def bernoulli_centres(num_classes: int, bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random codes with exactly ``bits // 2`` entries -1 each (CSQ's balanced Bernoulli centres)."""
    _check(num_classes, bits)
    order = torch.stack([torch.randperm(bits, generator=generator) for _ in range(num_classes)])
    return torch.where(order < bits // 2, -1.0, 1.0)


def centre_distances(centres: torch.Tensor) -> torch.Tensor:
    """The Hamming distances (C, C) between +-1 centres, int64."""
    return ((centres.shape[1] - centres @ centres.T) / 2).round().long()


def distance_summary(centres: torch.Tensor) -> dict:
    """The minimum and mean Hamming distance over the pairs of distinct centres (None for one centre)."""
    n = len(centres)
    if n < 2:
        return {"min": None, "mean": None}
    pairs = centre_distances(centres)[torch.triu_indices(n, n, offset=1).unbind()]
    return {"min": int(pairs.min()), "mean": float(pairs.float().mean())}


def separate(
    centres: torch.Tensor, steps: int = 2000, patience: int = 200, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip bits of the closest centres, at most ``steps`` flips, until ``patience`` flips find nothing better.

    Each step looks at every centre that is in a closest pair and at every
    bit it could flip, and makes the flip that leaves the fewest pairs at
    the minimum distance (ties: the larger total distance of that centre),
    so the minimum grows as soon as no pair is left at it. When no flip
    helps, a random flip of a closest centre moves the search on; the best
    centres seen are returned, so they are never worse (min, then fewer
    closest pairs) than the input. It stops early at the Plotkin bound.
    """
    c = centres.detach().clone().float()
    n, bits = c.shape
    if n < 2:
        return c
    ceiling = code_bounds(n, bits)["plotkin"]
    eye = torch.eye(n, dtype=torch.bool)
    d = centre_distances(c).masked_fill(eye, 2 * bits)  # the diagonal never counts as closest
    best, best_key, since = c.clone(), _key(d), 0
    for _ in range(steps):
        low = int(d.min())
        if low >= ceiling:
            break
        count = int((d == low).sum()) // 2  # closest pairs
        rows = (d == low).any(1).nonzero().flatten()  # (R,) centres in a closest pair
        # flipping bit k of centre i moves its distance to centre j by c[i, k] * c[j, k]
        moved = d[rows][:, None, :] + (c[rows][:, :, None] * c.T[None]).long()  # (R, bits, n)
        others = count - (d[rows] == low).sum(1)  # (R,) closest pairs without centre i
        after = others[:, None] + (moved == low).sum(2)  # (R, bits) closest pairs after the flip
        after = after.masked_fill(moved.min(2).values < low, n * n)  # a flip that lowers the minimum is out
        score = after * (2 * bits * n) - moved.masked_fill(eye[rows][:, None, :], 0).sum(2)
        r, k = divmod(int(score.argmin()), bits)
        if int(after.flatten()[r * bits + k]) >= count:  # no flip helps: a random one moves the search on
            r = int(torch.randint(len(rows), (1,), generator=generator))
            k = int(torch.randint(bits, (1,), generator=generator))
        i = int(rows[r])
        d[i] = d[:, i] = moved[r, k]
        d[i, i] = 2 * bits
        c[i, k] = -c[i, k]
        since += 1
        if _key(d) > best_key:
            best, best_key, since = c.clone(), _key(d), 0
        elif since >= patience:
            break
    return best


def _key(d: torch.Tensor) -> tuple:
    """Larger is better: the minimum distance, then fewer pairs at it, then the total distance."""
    low = int(d.min())
    return low, -int((d == low).sum()), int(d.sum())


def code_bounds(num_classes: int, bits: int) -> dict:
    """The largest minimum distance that ``num_classes`` codes of ``bits`` bits can have, bounded.

    "gilbert_varshamov": a code this far apart exists (M V(n, d - 1) <= 2^n);
    "hamming": none is further apart (M V(n, floor((d - 1) / 2)) <= 2^n,
    the sphere packing bound); "plotkin": none is further apart, because the
    mean distance of M codes is at most n floor(M/2) ceil(M/2) / C(M, 2);
    it is the tighter upper bound for a few classes.
    """
    _check(num_classes, bits)
    m, n, space = num_classes, bits, 2**bits

    def ball(radius: int) -> int:  # points within Hamming distance radius
        return sum(math.comb(n, i) for i in range(radius + 1))

    gv = max(d for d in range(1, n + 1) if m * ball(d - 1) <= space) if m * ball(0) <= space else 0
    hamming = max((d for d in range(1, n + 1) if m * ball((d - 1) // 2) <= space), default=0)
    plotkin = n if m < 2 else n * (m // 2) * ((m + 1) // 2) // math.comb(m, 2)
    return {"gilbert_varshamov": gv, "hamming": hamming, "plotkin": plotkin}


def label_centres(labels: torch.Tensor, centres: torch.Tensor, tie: torch.Tensor) -> torch.Tensor:
    """Each image's centre (B, bits): its class's, or for several labels the sign of their sum.

    ``labels`` are 0/1 (B, C); a bit where the classes' centres cancel takes
    the fixed +-1 vector ``tie`` (bits,), as CSQ does. An image without
    labels gets ``tie`` itself.
    """
    if labels.ndim != 2 or labels.shape[1] != len(centres):
        raise ValueError(f"labels must have shape (B, {len(centres)}), got {tuple(labels.shape)}")
    total = (labels != 0).to(centres.dtype) @ centres  # (B, bits)
    return torch.where(total == 0, tie.to(centres.dtype), total.sign())
