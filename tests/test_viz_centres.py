"""hhlib.viz.centres and hhlib.viz.families: the centres histograms count every pair, the bounds are marked,
and the families picture draws what it says."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hhlib.methods import hash_centres  # noqa: E402
from hhlib.viz.centres import plot_centre_distances  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_histograms_hold_every_pair_and_the_bounds_are_drawn():
    kinds = {kind: hash_centres(10, 64, kind) for kind in ("hadamard", "min-distance")}
    fig = plot_centre_distances(kinds)
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[:2] == ["hadamard: min 32, mean 32.0", "min-distance: min 35, mean 35.5"]
    assert labels[2:] == ["Gilbert-Varshamov (27)", "Plotkin bound (35)"]
    # one step outline per kind: every one of the 45 Hadamard pairs sits at 32; the optimised ones spread
    hadamard, optimised = (patch.get_path().vertices for patch in ax.patches)
    assert hadamard[:, 1].max() == 45 and set(hadamard[hadamard[:, 1] == 45][:, 0]) == {31.5, 32.5}
    assert optimised[:, 1].max() < 45 and optimised[optimised[:, 1] > 0][:, 0].min() == 34.5
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [27, 35]


@pytest.mark.parametrize(
    "centres, message",
    [({}, "at least one"), ({"a": hash_centres(4, 8), "b": hash_centres(5, 8)}, "same shape")],
)
def test_bad_input_is_one_clear_error(centres, message):
    with pytest.raises(ValueError, match=message):
        plot_centre_distances(centres)


def test_the_families_picture_has_a_panel_per_family_and_centres_on_the_cube():
    from hhlib.viz.families import CENTRES, FAMILY_TITLES, plot_families

    fig = plot_families()
    assert [ax.get_title() for ax in fig.axes] == list(FAMILY_TITLES)
    central = fig.axes[2]
    stars = central.collections[1].get_offsets()
    assert np.array_equal(np.asarray(stars), CENTRES) and np.abs(CENTRES).min() == 1  # corners of the cube
    # every code of the central panel has its arrow to its centre: 12 codes, 12 arrows
    assert len(central.texts) == len(central.collections[0].get_offsets()) == 12
    with pytest.raises(ValueError, match="need 3 axes"):
        plot_families(axes=fig.axes[:2])
