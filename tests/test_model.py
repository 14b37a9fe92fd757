"""HybridHashConfig validation and HybridHash shapes, sizes and codes."""

import pytest
import torch

from hhlib import HybridHash, HybridHashConfig


def small(**overrides) -> HybridHashConfig:
    kw = dict(embed_dims=(16, 32, 64), num_heads=(2, 4, 8), depths=(1, 1, 1), bits=16, drop_path_rate=0.0)
    kw.update(overrides)
    return HybridHashConfig(**kw)


@pytest.mark.parametrize(
    "img_size, patch_size, block_size",
    [(32, 2, 4), (28, 1, 7), (56, 1, 14), (64, 4, 4), (48, 3, 4)],
)
def test_any_valid_image_size_gives_codes(img_size, patch_size, block_size):
    config = small(img_size=img_size, patch_size=patch_size)
    assert config.block_size == block_size
    model = HybridHash(config).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, img_size, img_size))
        codes = model(torch.randn(2, 3, img_size, img_size))
    assert feats.shape == (2, 64, block_size, block_size)
    assert codes.shape == (2, 16)
    assert codes.abs().max() < 1


def test_level_maps_halve_and_blocks_follow_the_grid():
    model = HybridHash(small(img_size=32, patch_size=2)).eval()
    x = model.patch_embed(torch.randn(1, 3, 32, 32))
    sides = []
    for level in model.levels:
        x = level(x)
        sides.append(x.shape[-1])
    assert sides == [16, 8, 4]
    assert [tuple(level.pos_embed.shape) for level in model.levels] == [(1, 16, 16, 16), (1, 4, 16, 32), (1, 1, 16, 64)]
    # global tokens: 4x4 blocks pooled at level 1, 2x2 at level 2, one in the hash head
    assert model.levels[1].interaction.global_attn.pos_embed.shape == (1, 16, 32)
    assert model.levels[2].interaction.global_attn.pos_embed.shape == (1, 4, 64)
    assert model.hash_head.global_attn.pos_embed.shape == (1, 1, 64)


def test_cpu_preset_32px_patch2_trains_forward_and_backward():
    model = HybridHash(HybridHashConfig.cpu(bits=64)).train()
    x = torch.randn(4, 3, 32, 32)
    u = model(x)
    assert u.shape == (4, 64)
    u.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # every part of the network receives gradient, the global branches included
    assert model.levels[1].interaction.global_attn.attn.qkv.weight.grad.abs().sum() > 0
    assert model.hash_head.to_bits.weight.grad.abs().sum() > 0


def test_paper_configuration_has_the_authors_parameter_count():
    config = HybridHashConfig.paper(bits=64)
    assert (config.img_size, config.patch_size, config.block_size) == (224, 4, 14)
    model = HybridHash(config)
    assert round(model.num_parameters() / 1e6, 1) == 55.6
    # per-bit head: 512 -> bits 1x1 conv
    assert HybridHash(HybridHashConfig.paper(bits=16)).num_parameters() == model.num_parameters() - 48 * 513


def test_encode_gives_plus_minus_one_and_agrees_with_the_sign():
    model = HybridHash(small(img_size=32, patch_size=2)).eval()
    x = torch.randn(3, 3, 32, 32)
    codes = model.encode(x)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    with torch.no_grad():
        u = model(x)
    assert torch.equal(codes, torch.where(u >= 0, 1.0, -1.0))
    assert not codes.requires_grad


def test_drop_path_rises_linearly_over_all_layers():
    model = HybridHash(small(img_size=32, patch_size=2, depths=(1, 1, 2), drop_path_rate=0.3))
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for level in model.levels for block in level.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_initialisation_follows_the_paper():
    model = HybridHash(small(img_size=32, patch_size=2))
    assert torch.count_nonzero(model.hash_head.global_attn.pos_embed) == 0
    assert torch.count_nonzero(model.levels[1].interaction.global_attn.pos_embed) == 0
    assert model.levels[0].pos_embed.std().item() == pytest.approx(0.02, rel=0.2)
    assert model.levels[2].blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(model.levels[0].blocks[0].attn.qkv.bias) == 0
    assert torch.all(model.norm.weight == 1)


def test_lists_become_tuples_and_dict_round_trips():
    config = HybridHashConfig(**{**small().to_dict(), "embed_dims": [16, 32, 64]})
    assert config.embed_dims == (16, 32, 64)
    assert HybridHashConfig(**config.to_dict()) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(img_size=30, patch_size=4), "img_size=30 is not divisible by patch_size=4"),
        (dict(img_size=20, patch_size=2), "grid img_size/patch_size = 10 is not divisible by 4"),
        (dict(embed_dims=(16, 30, 64)), "embed_dims[1]=30 is not divisible by num_heads[1]=4"),
        (dict(embed_dims=(16, 36, 64), num_heads=(2, 4, 8)), "embed_dims[1]=36 is not divisible by"),
        (dict(interaction_heads=5), "is not divisible by interaction_heads=5"),
        (dict(bits=0), "bits must be a positive integer, got 0"),
        (dict(depths=(1, 1)), "one entry per level"),
        (dict(num_heads=(2, 0, 8)), "every entry of num_heads must be a positive integer, got 0"),
        (dict(drop_path_rate=1.5), "drop_path_rate must be in [0, 1), got 1.5"),
        (dict(img_size=32.0), "img_size must be a positive integer, got 32.0"),
    ],
)
def test_bad_configurations_name_the_offending_value(overrides, message):
    with pytest.raises(ValueError) as info:
        small(**{"img_size": 32, "patch_size": 2, **overrides})
    assert message in str(info.value)


def test_wrong_input_size_fails_clearly():
    model = HybridHash(small(img_size=32, patch_size=2))
    with pytest.raises(ValueError, match=r"expects \(B, 3, 32, 32\) images, got \(1, 3, 28, 28\)"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match=r"got \(1, 1, 32, 32\)"):
        model(torch.randn(1, 1, 32, 32))
