"""What the binary codes look like: bit statistics, distances, embeddings, stability, result grids.

Codes are (n, bits) arrays of -1/+1, as :func:`hhlib.train.encode` returns
them. Labels are either a split's (n, C) 0/1 label matrix (``split.labels``)
or (n,) class ids; where one colour or row per item is needed, an item of a
multi-label dataset counts as its first label.

Good codes (DESIGN.md section 1; the paper's Fig. 4 shows retrieval, the
rest are the usual checks of the hashing literature):

- every bit is +1 for about half of the items (*balance*): a bit that is
  always +1 carries no information;
- bits are uncorrelated: two bits that always agree are one bit twice;
- items of one class share a code pattern, so similar pairs lie at small
  Hamming distances and dissimilar pairs near ``bits / 2``;
- the code of an image barely changes when the image is shifted or flipped.

The numbers come first (``bit_balance`` ... ``embed_codes``), then the plots,
each of which returns its Figure.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from torch.utils.data import Dataset, Subset

from hhlib.data.transforms import TensorTransform
from hhlib.hamming import hamming_distances, to_numpy
from hhlib.train import encode

__all__ = [
    "bit_balance",
    "bit_entropy",
    "bit_correlation",
    "class_mean_codes",
    "pair_distances",
    "flipped_bits",
    "augmentation_flips",
    "embed_codes",
    "plot_bit_balance",
    "plot_bit_correlation",
    "plot_class_mean_codes",
    "plot_codes_by_class",
    "plot_distance_histograms",
    "plot_embedding",
    "plot_flipped_bits",
    "plot_retrieval_grid",
]

RELEVANT_COLOUR = "tab:green"
IRRELEVANT_COLOUR = "tab:red"
UNKNOWN_COLOUR = "0.6"
QUERY_COLOUR = "tab:blue"
CODE_COLOURS = "RdBu_r"  # -1 blue, 0 white, +1 red


# --------------------------------------------------------------------------- checks


def _codes(codes, name: str = "codes") -> np.ndarray:
    """(n, bits) -1/+1 codes as an int8 array, or a ValueError that says what is wrong."""
    array = to_numpy(codes)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty (n, bits) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.abs(array) == 1):
        raise ValueError(f"{name} must hold only -1 and +1 (binary codes from hhlib.train.encode)")
    return array.astype(np.int8, copy=False)


def _label_matrix(labels, n: int, name: str = "labels") -> np.ndarray:
    """(n, C) 0/1 labels from a label matrix or from (n,) class ids."""
    array = to_numpy(labels)
    if array.ndim == 1:
        if len(array) and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0):
            raise ValueError(f"{name} given as class ids must be non-negative integers")
        array = np.eye(int(array.max()) + 1 if len(array) else 1, dtype=np.uint8)[array]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (n,) class ids or an (n, classes) label matrix, got shape {array.shape}")
    if len(array) != n:
        raise ValueError(f"{name} has {len(array)} rows but there are {n} codes")
    return (array > 0).astype(np.uint8)


def _class_ids(labels, n: int, name: str = "labels") -> np.ndarray:
    """(n,) one class per item: the class id, or the first label of a label matrix."""
    return _label_matrix(labels, n, name).argmax(1)


def _sample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted positions of at most ``limit`` of ``n`` items, drawn without replacement."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"a sample size must be positive, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _figure(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")  # room for outside legends
        return fig, ax
    return ax.figure, ax


# --------------------------------------------------------------------------- numbers


def bit_balance(codes) -> np.ndarray:
    """The fraction of items whose bit is +1, per bit.

    Args:
        codes: (n, bits) -1/+1 codes.

    Returns:
        (bits,) float64 in [0, 1]; 0.5 is a perfectly balanced bit.
    """
    return (_codes(codes) > 0).mean(axis=0)


def bit_entropy(codes) -> np.ndarray:
    """The entropy of each bit over the items, in bits: what one bit can tell about an item.

    Args:
        codes: (n, bits) -1/+1 codes.

    Returns:
        (bits,) float64 in [0, 1]: 1 for a balanced bit, 0 for a constant one.
    """
    p = bit_balance(codes)  # (bits,)
    entropy = np.zeros_like(p)
    varying = (p > 0) & (p < 1)
    q = p[varying]
    entropy[varying] = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return entropy


def bit_correlation(codes) -> np.ndarray:
    """Pearson correlation between every two bits over the items.

    Args:
        codes: (n, bits) -1/+1 codes.

    Returns:
        (bits, bits) float64 in [-1, 1] with ones on the diagonal. A bit that
        never changes has no defined correlation; it gets 0 with every other bit.
    """
    x = _codes(codes).astype(np.float64)
    x -= x.mean(axis=0)  # (n, bits), centred
    std = np.sqrt((x**2).mean(axis=0))  # (bits,)
    covariance = x.T @ x / len(x)  # (bits, bits)
    scale = np.outer(std, std)
    correlation = np.divide(covariance, scale, out=np.zeros_like(covariance), where=scale > 0)
    np.fill_diagonal(correlation, 1.0)
    return np.clip(correlation, -1.0, 1.0)


def class_mean_codes(codes, labels) -> np.ndarray:
    """The mean code of each class.

    Args:
        codes: (n, bits) -1/+1 codes.
        labels: (n, C) label matrix or (n,) class ids; an item with several
            labels counts in each of its classes.

    Returns:
        (C, bits) float64 in [-1, 1]: +1 where every item of the class has
        the bit set, 0 where half of them have. A class without items is NaN.
    """
    codes = _codes(codes)
    members = _label_matrix(labels, len(codes)).T.astype(np.float64)  # (C, n)
    counts = members.sum(axis=1, keepdims=True)  # (C, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return members @ codes / counts


def pair_distances(
    query_codes,
    database_codes,
    query_labels,
    database_labels,
    max_queries: int | None = None,
    max_items: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances of (query, database item) pairs, split into similar and dissimilar pairs.

    A pair is similar when the two items share a label, the relevance of
    retrieval (DESIGN.md section 3).

    Args:
        query_codes: (Q, bits) -1/+1 codes.
        database_codes: (N, bits) -1/+1 codes.
        query_labels, database_labels: label matrices or class ids of both.
        max_queries, max_items: use a random sample of this many queries /
            database items (all when None); Q x N pairs add up fast.
        seed: seed of the samples.

    Returns:
        ``(similar, dissimilar)``: the int64 distances of the similar pairs
        and of the dissimilar pairs, in no particular order.
    """
    query_codes = _codes(query_codes, "query_codes")
    database_codes = _codes(database_codes, "database_codes")
    if query_codes.shape[1] != database_codes.shape[1]:
        raise ValueError(f"query codes have {query_codes.shape[1]} bits, database codes {database_codes.shape[1]}")
    query_labels = _label_matrix(query_labels, len(query_codes), "query_labels")
    database_labels = _label_matrix(database_labels, len(database_codes), "database_labels")
    if query_labels.shape[1] != database_labels.shape[1]:
        # class ids on both sides may give matrices of different widths
        width = max(query_labels.shape[1], database_labels.shape[1])
        query_labels = np.pad(query_labels, ((0, 0), (0, width - query_labels.shape[1])))
        database_labels = np.pad(database_labels, ((0, 0), (0, width - database_labels.shape[1])))
    rows = _sample(len(query_codes), max_queries, seed)
    columns = _sample(len(database_codes), max_items, seed + 1)
    distances = hamming_distances(query_codes[rows], database_codes[columns]).astype(np.int64)  # (q, m)
    similar = (query_labels[rows].astype(np.int32) @ database_labels[columns].T.astype(np.int32)) > 0  # (q, m)
    return distances[similar], distances[~similar]


def flipped_bits(codes_before, codes_after) -> np.ndarray:
    """How many bits differ between two codings of the same items.

    Args:
        codes_before, codes_after: (n, bits) -1/+1 codes, row i of both
            coding the same item.

    Returns:
        (n,) int64 counts in 0..bits (the Hamming distance of each pair of rows).
    """
    before = _codes(codes_before, "codes_before")
    after = _codes(codes_after, "codes_after")
    if before.shape != after.shape:
        raise ValueError(f"codes_before has shape {before.shape} but codes_after {after.shape}")
    return (before != after).sum(axis=1).astype(np.int64)


def augmentation_flips(
    model: torch.nn.Module,
    split: Dataset,
    repeats: int = 1,
    max_items: int | None = None,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Bits that flip when the training augmentation is applied to images.

    Each image is encoded as the query and database images are (no
    augmentation), then ``repeats`` times with the split's training
    augmentation, its random shift and horizontal flip where the dataset has
    them (see :class:`hhlib.data.transforms.TensorTransform`); every
    augmented code is compared with the plain one.

    Args:
        model: the hashing model.
        split: an in-memory split (its ``transform`` is a TensorTransform),
            e.g. ``data.query``: images the model did not train on.
        repeats: augmented draws per image.
        max_items: use a random sample of this many images (all when None).
        seed: seed of the sample and of the augmentations; the global torch
            random state is left as it was.
        device, batch_size, progress: as for :func:`hhlib.train.encode`.

    Returns:
        (repeats, n) int64: the flipped bits of each draw of each image.
    """
    transform = getattr(split, "transform", None)
    if not isinstance(transform, TensorTransform):
        raise ValueError(
            "augmentation_flips needs an in-memory split whose transform is a TensorTransform "
            f"(Fashion-MNIST, CIFAR-10, digits), got transform {transform!r}"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    plain, augmented = copy.copy(split), copy.copy(split)
    plain.transform = TensorTransform(transform.img_size, augment=False, flip=transform.flip)
    augmented.transform = TensorTransform(
        transform.img_size, augment=True, flip=transform.flip, max_shift=transform.max_shift
    )
    positions = _sample(len(split), max_items, seed).tolist()
    kwargs = dict(batch_size=batch_size, device=device, progress=progress)
    flips = []
    with torch.random.fork_rng(devices=[]):  # data loaders draw from the global generator too
        torch.manual_seed(seed)
        before = encode(model, Subset(plain, positions), desc="encode plain", **kwargs)
        for _ in range(repeats):
            after = encode(model, Subset(augmented, positions), desc="encode augmented", **kwargs)
            flips.append(flipped_bits(before, after))
    return np.stack(flips)


def embed_codes(
    codes,
    method: str = "tsne",
    max_items: int | None = 2000,
    seed: int = 0,
    perplexity: float = 30.0,
    threads: int | None = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D map of codes in which near codes stay near: t-SNE or UMAP.

    t-SNE works on Euclidean distances; between -1/+1 codes the squared
    Euclidean distance is four times the Hamming distance, so the
    neighbourhoods are those of Hamming space. UMAP is given the Hamming
    metric directly.

    Args:
        codes: (n, bits) -1/+1 codes.
        method: ``"tsne"`` (scikit-learn) or ``"umap"`` (the ``umap-learn``
            package, which hhlib does not require).
        max_items: embed a random sample of this many codes (t-SNE takes
            about 10 s for 2,000 on two cores); None embeds all.
        seed: seed of the sample and of the embedding.
        perplexity: t-SNE's effective number of neighbours (lowered for
            small samples, which need fewer than 3 x perplexity points).
        threads: OpenMP threads of t-SNE; None: all cores. One by default:
            on a busy two-core machine, two threads made t-SNE of 500 codes
            take 17-90 s instead of 2-4 s (threads that wait for each other
            spin), while on an idle one they could at best halve the time.

    Returns:
        ``(coords, positions)``: (m, 2) float coordinates and the (m,)
        positions in ``codes`` of the items embedded.

    Raises:
        ImportError: ``method="umap"`` without ``umap-learn`` installed.
    """
    codes = _codes(codes)
    if method not in ("tsne", "umap"):
        raise ValueError(f"method must be 'tsne' or 'umap', got {method!r}")
    positions = _sample(len(codes), max_items, seed)
    sample = codes[positions].astype(np.float32)  # (m, bits)
    if len(sample) < 4:
        raise ValueError(f"embedding needs at least 4 codes, got {len(sample)}")
    if method == "umap":
        try:
            import umap
        except ImportError as error:
            raise ImportError("UMAP needs the umap-learn package: pip install umap-learn") from error
        reducer = umap.UMAP(n_components=2, metric="hamming", random_state=seed, n_neighbors=min(15, len(sample) - 1))
        return reducer.fit_transform(sample), positions
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(perplexity, (len(sample) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(sample), positions


# --------------------------------------------------------------------------- plots


def plot_bit_balance(codes, ax: Axes | None = None) -> Figure:
    """One bar per bit: the fraction of items with the bit at +1, against the ideal 0.5.

    Args:
        codes: (n, bits) -1/+1 codes.
        ax: draw here instead of in a new figure.

    Returns:
        The Figure.
    """
    balance = bit_balance(codes)  # (bits,)
    fig, ax = _figure(ax, (9, 3))
    ax.bar(np.arange(len(balance)), balance, width=0.8, color="tab:blue")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="ideal 0.5")
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.7, len(balance) - 0.3)
    ax.set_xlabel("bit")
    ax.set_ylabel("fraction of +1")
    ax.set_title(f"bit balance: mean |fraction - 0.5| = {np.abs(balance - 0.5).mean():.3f}")
    ax.legend(loc="upper right")
    return fig


def plot_bit_correlation(codes, ax: Axes | None = None) -> Figure:
    """Heat map of the correlation between every two bits.

    Args:
        codes: (n, bits) -1/+1 codes.
        ax: draw here instead of in a new figure.

    Returns:
        The Figure (the image's data is :func:`bit_correlation`).
    """
    correlation = bit_correlation(codes)  # (bits, bits)
    bits = len(correlation)
    fig, ax = _figure(ax, (5.5, 4.5))
    image = ax.imshow(correlation, cmap=CODE_COLOURS, vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="correlation")
    off_diagonal = np.abs(correlation[~np.eye(bits, dtype=bool)]) if bits > 1 else np.zeros(1)
    ax.set_title(f"bit correlation: mean |r| off the diagonal = {off_diagonal.mean():.3f}")
    ax.set_xlabel("bit")
    ax.set_ylabel("bit")
    return fig


def plot_class_mean_codes(codes, labels, class_names: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """Heat map of the mean code of each class (rows) over the bits (columns).

    Dark red or blue cells are bits on which the class agrees; a class with
    a pale row has no code of its own.

    Args:
        codes: (n, bits) -1/+1 codes.
        labels: (n, C) label matrix or (n,) class ids.
        class_names: one name per class, for the rows.
        ax: draw here instead of in a new figure.

    Returns:
        The Figure (the image's data is :func:`class_mean_codes`).
    """
    means = class_mean_codes(codes, labels)  # (C, bits)
    if class_names is not None and len(class_names) != len(means):
        raise ValueError(f"{len(class_names)} class names for {len(means)} classes")
    fig, ax = _figure(ax, (10, 0.35 * len(means) + 1.5))
    image = ax.imshow(means, cmap=CODE_COLOURS, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean bit", pad=0.01)
    ax.set_yticks(np.arange(len(means)), class_names if class_names is not None else np.arange(len(means)))
    ax.set_xlabel("bit")
    ax.set_title("mean code per class")
    return fig


def plot_codes_by_class(
    codes, labels, per_class: int = 20, class_names: Sequence[str] | None = None, ax: Axes | None = None, seed: int = 0
) -> Figure:
    """A sample of codes, one row each, grouped by class: the stripes are each class's code.

    Args:
        codes: (n, bits) -1/+1 codes.
        labels: (n, C) label matrix or (n,) class ids (multi-label items
            go with their first label).
        per_class: rows drawn per class (fewer where a class has fewer items).
        class_names: one name per class.
        ax: draw here instead of in a new figure.
        seed: seed of the sample.

    Returns:
        The Figure; its image holds the sampled codes, class by class.
    """
    codes = _codes(codes)
    classes = _class_ids(labels, len(codes))
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    present = np.unique(classes)
    groups = [np.sort(rng.permutation(np.flatnonzero(classes == c))[:per_class]) for c in present]
    rows = codes[np.concatenate(groups)]  # (rows, bits)
    fig, ax = _figure(ax, (10, 6))
    ax.imshow(rows, cmap=CODE_COLOURS, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    bounds = np.cumsum([len(g) for g in groups])
    for bound in bounds[:-1]:
        ax.axhline(bound - 0.5, color="black", linewidth=1)
    centres = bounds - np.array([len(g) for g in groups]) / 2 - 0.5
    names = [class_names[c] if class_names is not None else str(c) for c in present]
    ax.set_yticks(centres, names)
    ax.set_xlabel("bit (red +1, blue -1)")
    ax.set_title(f"codes of up to {per_class} items per class")
    return fig


def plot_distance_histograms(similar, dissimilar, bits: int, radius: int | None = 2, ax: Axes | None = None) -> Figure:
    """Histograms of the Hamming distances of similar and of dissimilar pairs.

    Each histogram is normalised to sum to one, so the two compare although
    dissimilar pairs are far more numerous. Good codes keep the two apart;
    where they overlap, ranking by distance mixes relevant and irrelevant
    items.

    Args:
        similar, dissimilar: distances, e.g. from :func:`pair_distances`.
        bits: the code length (the x axis runs over 0..bits).
        radius: mark this Hamming radius (precision within radius 2 counts
            the items inside it); None marks nothing.
        ax: draw here instead of in a new figure.

    Returns:
        The Figure, with one bar per distance for each of the two groups.
    """
    bins = np.arange(bits + 2) - 0.5
    fig, ax = _figure(ax, (8, 3.5))
    for name, values, colour in (("similar", similar, RELEVANT_COLOUR), ("dissimilar", dissimilar, IRRELEVANT_COLOUR)):
        values = np.asarray(values).ravel()
        if len(values) and (values.min() < 0 or values.max() > bits):
            raise ValueError(f"{name} distances must lie in 0..{bits}")
        weights = np.full(len(values), 1 / len(values)) if len(values) else None
        mean = f", mean {values.mean():.1f}" if len(values) else ""
        ax.hist(
            values, bins=bins, weights=weights, alpha=0.6, color=colour, label=f"{name} pairs ({len(values):,}{mean})"
        )
    if radius is not None:
        ax.axvline(radius + 0.5, color="black", linestyle="--", linewidth=1, label=f"radius {radius}")
    ax.set_xlim(-0.5, bits + 0.5)
    ax.set_xlabel("Hamming distance")
    ax.set_ylabel("fraction of pairs")
    ax.set_title("distances between query and database codes")
    ax.legend()
    return fig


def plot_embedding(
    coords, labels, class_names: Sequence[str] | None = None, ax: Axes | None = None, title: str = "t-SNE of the codes"
) -> Figure:
    """Scatter a 2-D embedding, one colour per class, one marker per place.

    Identical codes get identical coordinates, and trained codes repeat a
    lot (a class often has a few code words), so items of a class at the
    same place are drawn as one marker whose area grows with their number.

    Args:
        coords: (m, 2) coordinates, e.g. from :func:`embed_codes`.
        labels: (m,) class ids or (m, C) label matrix of those items
            (``labels[positions]``); multi-label items take their first label.
        class_names: one name per class, for the legend.
        ax: draw here instead of in a new figure.
        title: the axes title.

    Returns:
        The Figure, with one scatter collection per class present; its
        offsets are the class's distinct places, its sizes ``6 x count``.
    """
    coords = to_numpy(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be (m, 2), got shape {coords.shape}")
    classes = _class_ids(labels, len(coords))
    fig, ax = _figure(ax, (6.5, 5.5))
    colours = plt.get_cmap("tab10" if classes.max() < 10 else "tab20")
    # places closer than this are one place (t-SNE moves identical inputs identically)
    tolerance = 1e-6 * max(1.0, float(np.ptp(coords))) if len(coords) else 1.0
    for c in np.unique(classes):
        members = coords[classes == c]  # (m_c, 2)
        _, first, counts = np.unique(np.round(members / tolerance), axis=0, return_index=True, return_counts=True)
        ax.scatter(
            members[first, 0],
            members[first, 1],
            s=6 * counts,
            alpha=0.7,
            color=colours(c % colours.N),
            linewidths=0,
            label=class_names[c] if class_names is not None else str(c),
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    legend = ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="marker area ~ images")
    for handle in legend.legend_handles:
        handle.set_sizes([30])
    return fig


def plot_flipped_bits(flips, bits: int, ax: Axes | None = None) -> Figure:
    """Histogram of the bits flipped by augmentation, one count per (image, draw).

    Args:
        flips: counts, e.g. from :func:`augmentation_flips` (any shape).
        bits: the code length.
        ax: draw here instead of in a new figure.

    Returns:
        The Figure, with one bar per number of flipped bits (0..bits).
    """
    flips = np.asarray(flips).ravel()
    if len(flips) == 0:
        raise ValueError("flips is empty")
    if flips.min() < 0 or flips.max() > bits:
        raise ValueError(f"flipped bits must lie in 0..{bits}")
    fig, ax = _figure(ax, (8, 3.5))
    ax.hist(flips, bins=np.arange(bits + 2) - 0.5, weights=np.full(len(flips), 1 / len(flips)), color="tab:purple")
    ax.set_xlim(-0.5, bits + 0.5)
    ax.set_xlabel("bits flipped by a random shift / flip")
    ax.set_ylabel("fraction of images")
    ax.set_title(
        f"code stability: mean {flips.mean():.2f} of {bits} bits flipped, {(flips == 0).mean():.0%} of codes unchanged"
    )
    return fig


def _rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image must be (H, W) or (H, W, 1/3/4), got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image * 255 if image.max() <= 1 else image, 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]


def _mosaic(
    images: Sequence[np.ndarray], frames: Sequence[str], columns: int, caption_rows: float = 0.0, max_tile: int = 128
) -> tuple[np.ndarray, np.ndarray, int]:
    """Images side by side on one white canvas, each in a frame of its colour.

    One image is much faster to draw than one axes per result (about 30 ms
    each), which keeps the explorer responsive.

    Args:
        images: the images; resized to a common square tile (the largest
            side among them, at most ``max_tile`` pixels) where they differ.
        frames: a matplotlib colour per image.
        columns: tiles per row.
        caption_rows: blank space above each tile, in tile heights.
        max_tile: the largest tile side.

    Returns:
        ``(canvas, corners, tile)``: the (H, W, 3) uint8 canvas, the (n, 2)
        (row, column) pixel of each framed tile's top-left corner, and the
        tile side (the frame adds ``max(1, tile // 16)`` pixels each side).
    """
    from PIL import Image as PILImage

    images = [_rgb(image) for image in images]
    tile = min(max_tile, max(max(image.shape[:2]) for image in images))
    border = max(1, tile // 16)
    gap = max(2, tile // 8)
    framed = tile + 2 * border
    band = round(caption_rows * framed)
    rows = -(-len(images) // columns)
    pitch_y, pitch_x = band + framed + gap, framed + gap
    canvas = np.full((rows * pitch_y, columns * pitch_x - gap, 3), 255, np.uint8)
    corners = np.zeros((len(images), 2), np.int64)
    for rank, (image, frame) in enumerate(zip(images, frames, strict=True)):
        if image.shape[:2] != (tile, tile):
            image = np.asarray(PILImage.fromarray(image).resize((tile, tile), PILImage.BILINEAR))
        top, left = (rank // columns) * pitch_y + band, (rank % columns) * pitch_x
        canvas[top : top + framed, left : left + framed] = np.round(np.array(to_rgb(frame)) * 255)
        canvas[top + border : top + border + tile, left + border : left + border + tile] = image
        corners[rank] = top, left
    return canvas, corners, tile


def plot_retrieval_grid(
    query_image: np.ndarray,
    images: Sequence[np.ndarray],
    distances: Sequence[int],
    relevant: Sequence[bool] | None = None,
    captions: Sequence[str] | None = None,
    query_caption: str = "query",
    columns: int = 10,
    title: str | None = None,
) -> Figure:
    """The query and its results, ranked, framed green (relevant), red (not) or grey (unknown).

    Args:
        query_image: (H, W, 3) or (H, W) image.
        images: the results' images, best first (resized to one tile size
            where they differ).
        distances: their Hamming distances to the query.
        relevant: whether each shares a label with the query; None when the
            query's label is unknown (an uploaded image).
        captions: a short text per result (e.g. its class), under its rank
            and distance.
        query_caption: the title of the query image.
        columns: results per row.
        title: the figure's title.

    Returns:
        The Figure, with two axes: the query (framed blue) and the results,
        drawn as one image with one caption text per result, in rank order.
    """
    n = len(images)
    lengths = {len(distances), n} | {len(x) for x in (relevant, captions) if x is not None}
    if lengths != {n}:
        raise ValueError("images, distances, relevant and captions must have one entry per result")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    caption_rows = 0.55 if captions is not None else 0.3
    cell = 1.1  # inches per result
    fig = plt.figure(figsize=(cell * (columns + 1.3), cell * rows * (1 + caption_rows) + (0.45 if title else 0.1)))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.1, columns], wspace=0.05)
    query_ax, results_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    query_canvas, _, _ = _mosaic([query_image], [QUERY_COLOUR], 1, max_tile=256)
    query_ax.imshow(query_canvas)
    query_ax.set_title(query_caption, fontsize=8)
    query_ax.set_anchor("N")
    results_ax.set_anchor("N")
    for ax in (query_ax, results_ax):
        ax.axis("off")
    if n == 0:
        results_ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=results_ax.transAxes)
    else:
        frames = [
            UNKNOWN_COLOUR if relevant is None else RELEVANT_COLOUR if r else IRRELEVANT_COLOUR
            for r in (relevant if relevant is not None else [None] * n)
        ]
        canvas, corners, tile = _mosaic(images, frames, columns, caption_rows)
        results_ax.imshow(canvas)
        for rank, (top, left) in enumerate(corners):
            text = f"{rank + 1}. d={int(distances[rank])}" + (f"\n{captions[rank]}" if captions is not None else "")
            results_ax.text(left + tile / 2, top - 1, text, ha="center", va="bottom", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
