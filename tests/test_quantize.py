"""Quantisers: the sign rule, the random rotation, and a quantiser saved beside the weights."""

import pytest
import torch

from hhlib import HybridHash, HybridHashConfig
from hhlib.quantize import Quantizer, RotationQuantizer, SignQuantizer, binarize, make_quantizer, random_rotation


def small(**overrides) -> HybridHashConfig:
    kw = dict(embed_dims=(16, 32, 64), num_heads=(2, 4, 8), depths=(1, 1, 1), bits=16, drop_path_rate=0.0)
    return HybridHashConfig(**{**kw, "img_size": 32, "patch_size": 2, **overrides})


def test_binarize_maps_zero_to_plus_one_and_keeps_the_dtype():
    u = torch.tensor([-0.5, -0.0, 0.0, 1e-8, 0.7], dtype=torch.bfloat16)
    codes = binarize(u)
    assert codes.dtype == torch.bfloat16 and codes.tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]


def test_random_rotation_is_orthogonal_and_the_same_for_a_seed():
    r = random_rotation(48)
    assert r.shape == (48, 48) and r.dtype == torch.float32
    assert torch.allclose(r @ r.T, torch.eye(48), atol=1e-5)
    assert torch.equal(r, random_rotation(48)) and not torch.equal(r, random_rotation(48, seed=1))
    with pytest.raises(ValueError, match="positive integer"):
        random_rotation(0)


def test_a_model_signs_its_codes_unless_given_another_quantizer():
    model = HybridHash(small()).eval()
    assert isinstance(model.quantizer, SignQuantizer)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        u = model(x)
    assert torch.equal(model.encode(x), torch.where(u >= 0, 1.0, -1.0))
    model.quantizer = make_quantizer("rotation", 16)
    rotation = model.quantizer.rotation
    assert torch.equal(model.encode(x), torch.where(u @ rotation >= 0, 1.0, -1.0))
    assert not torch.equal(model.encode(x), torch.where(u >= 0, 1.0, -1.0))
    # the network's state_dict holds the network only; the quantiser is saved beside it
    assert not any("quantizer" in name or "rotation" in name for name in model.state_dict())


def test_a_quantizer_round_trips_through_its_state():
    rotated = make_quantizer("rotation", 8, seed=3)
    state = rotated.to_state()
    assert state["kind"] == "rotation" and torch.equal(state["rotation"], random_rotation(8, seed=3))
    back = Quantizer.from_state(state)
    u = torch.randn(5, 8)
    assert isinstance(back, RotationQuantizer) and torch.equal(back(u), rotated(u))
    assert isinstance(Quantizer.from_state({"kind": "sign"}), SignQuantizer)
    with pytest.raises(ValueError, match="unknown quantizer kind 'pq'"):
        Quantizer.from_state({"kind": "pq"})
    with pytest.raises(ValueError, match="unknown quantizer kind"):
        make_quantizer("lsh", 8)
    with pytest.raises(ValueError, match="takes 8-bit codes, got 4"):
        rotated(torch.randn(2, 4))


def test_rotation_grades_codes_that_share_their_signs():
    # two relaxed codes with the same signs: sure (all 0.9) and unsure (half the bits at 0.05)
    rotated = make_quantizer("rotation", 64)
    sure = torch.full((1, 64), 0.9)
    unsure = sure.clone()
    unsure[0, ::2] = 0.05
    assert torch.equal(binarize(sure), binarize(unsure))  # the plain signs cannot tell them apart
    a, b = rotated(sure), rotated(unsure)
    assert 0 < int((a != b).sum()) < 32  # rotated, they lie about as far apart as their angle (42 degrees)
    # bfloat16 codes are rotated in float32 and keep their dtype
    codes = rotated(sure.bfloat16())
    assert codes.dtype == torch.bfloat16 and set(codes.unique().tolist()) <= {-1.0, 1.0}
