"""Training-free hash codes: random, LSH and PCA hashing."""

import numpy as np
import pytest
import torch

from hhlib.baselines import LinearHash, fit_lsh, fit_pcah, random_codes, split_pixels
from hhlib.metrics import mean_average_precision


def clustered_pixels(n_per_class=60, classes=4, dim=50, seed=0):
    """Images as noisy copies of one prototype per class: pixels that do carry the class."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((classes, dim)) * 4
    labels = np.repeat(np.arange(classes), n_per_class)
    pixels = prototypes[labels] + rng.normal(0, 0.3, (len(labels), dim))
    return pixels.astype(np.float32), labels


def test_random_codes_are_signs_seeded_and_balanced():
    codes = random_codes(2000, 16, seed=3)
    assert codes.shape == (2000, 16) and codes.dtype == np.int8
    assert set(np.unique(codes)) == {-1, 1}
    assert np.array_equal(codes, random_codes(2000, 16, seed=3))
    assert not np.array_equal(codes, random_codes(2000, 16, seed=4))
    assert abs(codes.mean()) < 0.05
    assert random_codes(0, 8).shape == (0, 8)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bits_must_be_a_positive_integer(bad):
    pixels, _ = clustered_pixels()
    with pytest.raises(ValueError, match="bits"):
        random_codes(3, bad)
    with pytest.raises(ValueError, match="bits"):
        fit_lsh(pixels, bad)


def test_lsh_is_the_sign_of_a_gaussian_projection_of_centred_pixels():
    pixels, _ = clustered_pixels()
    lsh = fit_lsh(pixels, 12, seed=1)
    assert lsh.name == "LSH" and lsh.bits == 12 and lsh.projection.shape == (50, 12)
    np.testing.assert_allclose(lsh.mean, pixels.mean(axis=0), rtol=1e-6)
    expected = np.where((pixels - lsh.mean) @ lsh.projection >= 0, 1, -1)
    codes = lsh.encode(pixels, batch_size=7)  # several chunks
    assert codes.dtype == np.int8 and np.array_equal(codes, expected)
    assert np.array_equal(fit_lsh(pixels, 12, seed=1).projection, lsh.projection)


def test_pcah_projects_on_the_leading_principal_components():
    rng = np.random.default_rng(0)
    # variance 9, 4, 1 along the first three axes, tiny elsewhere
    pixels = rng.normal(0, 1, (500, 6)) * np.array([3, 2, 1, 0.01, 0.01, 0.01])
    pcah = fit_pcah(pixels, 3)
    assert pcah.name == "PCAH" and pcah.projection.shape == (6, 3)
    np.testing.assert_allclose(np.abs(pcah.projection), np.eye(6)[:, :3], atol=0.05)
    codes = pcah.encode(pixels)
    # each bit is the sign of one axis (up to the component's sign)
    for bit in range(3):
        agreement = np.mean(codes[:, bit] == np.where(pixels[:, bit] - pcah.mean[bit] >= 0, 1, -1))
        assert agreement < 0.02 or agreement > 0.98
    with pytest.raises(ValueError, match="min"):
        fit_pcah(pixels, 7)


def test_projections_beat_random_codes_on_pixels_that_carry_the_class():
    pixels, labels = clustered_pixels()
    query, database = slice(0, 240, 6), np.setdiff1d(np.arange(240), np.arange(0, 240, 6))
    results = {}
    for name, hasher in (("LSH", fit_lsh(pixels, 32)), ("PCAH", fit_pcah(pixels, 8))):
        results[name] = mean_average_precision(
            hasher.encode(pixels[query]), hasher.encode(pixels[database]), labels[query], labels[database]
        )
    chance = mean_average_precision(random_codes(40, 32, 1), random_codes(200, 32, 2), labels[query], labels[database])
    assert chance < 0.4
    assert results["LSH"] > 0.9 and results["PCAH"] > chance + 0.3


def test_encode_checks_its_input():
    pixels, _ = clustered_pixels()
    lsh = fit_lsh(pixels, 8)
    with pytest.raises(ValueError, match="50 pixel values"):
        lsh.encode(pixels[:, :10])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        lsh.encode(pixels[0])
    with pytest.raises(ValueError, match="train_pixels"):
        fit_pcah(np.zeros((0, 5)), 2)
    assert isinstance(lsh, LinearHash)


class FakeSplit:
    """What split_pixels reads: len, raw_image (H, W, 3) uint8 and items (image, label, index)."""

    def __init__(self, images, raw=True):
        self.images = images  # (N, H, W) uint8
        if not raw:
            self.raw_image = None
            del self.raw_image

    def __len__(self):
        return len(self.images)

    def raw_image(self, i):
        return np.repeat(self.images[i][:, :, None], 3, axis=2)

    def __getitem__(self, i):
        return torch.from_numpy(np.repeat(self.images[i][None], 3, axis=0)).float(), None, i


def test_split_pixels_reads_raw_images_flattened_and_scaled():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    split = FakeSplit(images)
    grey = split_pixels(split, grey=True)
    assert grey.shape == (2, 12) and grey.dtype == np.float32
    np.testing.assert_allclose(grey, images.reshape(2, 12) / 255.0, rtol=1e-6)
    colour = split_pixels(split)
    assert colour.shape == (2, 36)
    np.testing.assert_allclose(colour[:, ::3], grey, rtol=1e-6)  # (H, W, 3) flattened: channel fastest


def test_split_pixels_on_an_in_memory_split():
    from hhlib.data import InMemorySplit
    from hhlib.data.transforms import TensorTransform

    pool = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8)  # grey pool, as Fashion-MNIST's
    rows = np.array([5, 2, 17, 9])
    split = InMemorySplit(
        pool,
        rows,
        np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]],
        TensorTransform(8, augment=True, flip=True),
        pool_indices=rows,
    )
    pixels = split_pixels(split, grey=True)  # raw pixels: no augmentation even for a training split
    assert pixels.shape == (4, 64)
    np.testing.assert_allclose(pixels, pool[rows, 0].reshape(4, 64).numpy() / 255.0, rtol=1e-6)
    # colour: the grey channel three times, laid out as raw_image's (H, W, 3)
    expected = np.stack([split.raw_image(i) for i in range(4)]).reshape(4, -1) / 255.0
    np.testing.assert_allclose(split_pixels(split), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        split_pixels(FakeSplit(np.zeros((0, 2, 2), np.uint8)))
