"""Data the tests make: no dataset needs to be installed."""

import torch


def synthetic_data(per_class: tuple[int, int, int] = (40, 16, 40), img_size: int = 32, seed: int = 0):
    """Ten classes of 28 px grey images, each a bright 7x7 square at its own place plus noise.

    Made here, so the training tests need no dataset installed; easy enough that a
    tiny model learns it in a few epochs. ``per_class``: train, query, database items.
    """
    import numpy as np

    from hhlib.data.memory import build_splits
    from hhlib.data.registry import RetrievalData

    rng = np.random.default_rng(seed)
    n_classes, counts = 10, per_class
    classes = np.repeat(np.arange(n_classes), sum(counts))
    pixels = rng.normal(40, 25, (len(classes), 1, 28, 28))
    for i, c in enumerate(classes):
        row, col = divmod(int(c), 4)
        pixels[i, 0, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] += 160
    pixels = torch.from_numpy(pixels.clip(0, 255).astype(np.uint8))
    position = np.concatenate([np.arange(sum(counts)) for _ in range(n_classes)])
    bounds = np.cumsum((0, *counts))
    parts = {
        name: np.flatnonzero((position >= bounds[i]) & (position < bounds[i + 1]))
        for i, name in enumerate(("train", "query", "database"))
    }
    splits = build_splits(pixels, classes, n_classes, parts, img_size, augment=False, flip=False, max_shift=0)
    names = tuple(f"square {c}" for c in range(n_classes))
    return RetrievalData(
        "synthetic", splits["train"], splits["query"], splits["database"], n_classes, None, names, img_size, None
    )
