"""The authors' checkpoints and NesT-B weights load into HybridHash."""

import re

import pytest
import timm
import torch
from timm.models.nest import Nest

import hhlib.weights
from hhlib import HybridHash, HybridHashConfig, load_nest_weights, load_reference_weights
from hhlib.weights import authors_to_hhlib, nest_to_hhlib


def reference_model(reference) -> HybridHash:
    return HybridHash(HybridHashConfig(**reference["model_config"], drop_path_rate=0.0)).eval()


def test_authors_weights_give_the_authors_output(reference):
    model = reference_model(reference)
    report = load_reference_weights(model, reference["state_dict"])
    assert len(report.loaded) == len(model.state_dict()) == 83
    assert report.missing == [] and report.unexpected == []
    assert report.ignored == ["FcLayer.weight", "FcLayer.bias"]
    with torch.no_grad():
        out = model(reference["input"])
    # 1e-6 is tighter than the 1e-5: it tells bilinear upsampling with
    # align_corners=False (exact to 1e-7) from align_corners=True (3e-6).
    torch.testing.assert_close(out, reference["output"], atol=1e-6, rtol=0)


def test_authors_weights_load_into_a_model_that_rotates_its_codes(reference):
    from hhlib.quantize import make_quantizer

    model = HybridHash(HybridHashConfig(**reference["model_config"], drop_path_rate=0.0)).eval()
    model.quantizer = make_quantizer("rotation", model.config.bits)
    rotation = model.quantizer.rotation.clone()
    report = load_reference_weights(model, reference["state_dict"])
    assert report.missing == [] and report.unexpected == []  # the quantiser is no weight to load
    assert torch.equal(model.quantizer.rotation, rotation)
    with torch.no_grad():
        torch.testing.assert_close(model(reference["input"]), reference["output"], atol=1e-6, rtol=0)


def test_authors_names_map_one_to_one(reference):
    names = [authors_to_hhlib(k) for k in reference["state_dict"] if not k.startswith("FcLayer")]
    assert None not in names and len(set(names)) == len(names)
    assert authors_to_hhlib("levels.1.pool.global_attention.pos_embed_glo") == (
        "levels.1.interaction.global_attn.pos_embed"
    )
    assert authors_to_hhlib("hashlayer_train.convS2.weight") == "hash_head.conv_3x1.weight"
    assert authors_to_hhlib("FcLayer.weight") is None


def test_authors_weights_for_another_configuration_fail_with_the_shapes(reference):
    other = HybridHash(HybridHashConfig(**{**reference["model_config"], "bits": 16}, drop_path_rate=0.0))
    with pytest.raises(
        ValueError,
        match=r"hashlayer_train.conv2.weight -> hash_head.to_bits.weight: "
        r"source \(32, 64, 1, 1\), model \(16, 64, 1, 1\)",
    ):
        load_reference_weights(other, reference["state_dict"])


def test_an_incomplete_checkpoint_is_refused(reference):
    partial = {k: v for k, v in reference["state_dict"].items() if not k.startswith("norm.")}
    with pytest.raises(ValueError, match="missing 2"):
        load_reference_weights(reference_model(reference), partial)


def test_nest_b_fills_243_tensors_at_the_paper_configuration():
    nest = timm.create_model("nest_base_jx", pretrained=False)  # random weights, no download
    model = HybridHash(HybridHashConfig.paper(bits=64))
    report = load_nest_weights(model, nest)
    assert len(report.loaded) == 243
    assert len(report.loaded) + len(report.missing) == 263
    # NesT-B has 20 layers in level 2; HybridHash keeps 15
    assert len(report.unexpected) == 5 * 12
    assert all(re.match(r"levels\.2\.transformer_encoder\.(1[5-9])\.", n) for n in report.unexpected)
    assert report.ignored == ["head.weight", "head.bias"]
    # the global branches and the hash head start fresh
    assert all("global" in n or n.startswith("hash_head") for n in report.missing)
    ours, theirs = model.state_dict(), nest.state_dict()
    for name in ("levels.2.transformer_encoder.14.mlp.fc2.weight", "levels.1.pool.conv.weight", "norm.bias"):
        assert torch.equal(ours[nest_to_hhlib(name)], theirs[name])


def small_nest_and_model():
    dims = dict(embed_dims=(32, 64, 128), num_heads=(2, 4, 8), depths=(1, 1, 2))
    nest = Nest(img_size=32, patch_size=2, num_levels=3, num_classes=10, **dims)
    return nest, HybridHash(HybridHashConfig(img_size=32, patch_size=2, bits=16, **dims))


@pytest.mark.parametrize("form", ["state_dict", "pth", "wrapped", "safetensors"])
def test_nest_weights_from_a_state_dict_or_a_file(tmp_path, form):
    nest, model = small_nest_and_model()
    state = nest.state_dict()
    if form == "state_dict":
        source = state
    elif form == "pth":
        source = tmp_path / "nest.pth"
        torch.save(state, source)
    elif form == "wrapped":
        source = {"state_dict": state, "epoch": 3}
    else:
        from safetensors.torch import save_file

        source = str(tmp_path / "nest.safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, source)
    report = load_nest_weights(model, source)
    assert len(report.loaded) == 2 + (1 + 12) + (1 + 4 + 12) + (1 + 4 + 24) + 2
    assert torch.equal(model.patch_embed.proj.weight, nest.patch_embed.proj.weight)


def test_nest_weights_of_other_widths_fail_with_the_shapes():
    nest, _ = small_nest_and_model()
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight -> patch_embed.proj.weight: source"):
        load_nest_weights(HybridHash(HybridHashConfig.cpu(embed_dims=(64, 128, 256), num_heads=(2, 4, 8))), nest)


def test_not_a_nest_state_dict():
    _, model = small_nest_and_model()
    with pytest.raises(ValueError, match="no tensor of the source has a NesT name"):
        load_nest_weights(model, {"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(FileNotFoundError, match="no NesT weights file at"):
        load_nest_weights(model, "/nonexistent/nest.pth")
    with pytest.raises(TypeError, match="source must be"):
        load_nest_weights(model, 3)


def test_offline_download_says_how_to_pass_a_local_file(monkeypatch):
    calls = []

    def offline(name, pretrained):
        calls.append((name, pretrained))
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(hhlib.weights, "_hub_reachable", lambda: True)  # the hub answers, the download fails
    _, model = small_nest_and_model()
    with pytest.raises(RuntimeError) as info:
        load_nest_weights(model)
    assert calls == [("nest_base_jx.goog_in1k", True)]
    message = str(info.value)
    assert "no network?" in message and "load_nest_weights(model, 'nest_base_jx.pth')" in message


def test_unreachable_hub_fails_at_once_without_trying_the_download(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("no download attempt when the hub is unreachable and nothing is cached")

    monkeypatch.setattr(timm, "create_model", never)
    monkeypatch.setattr(hhlib.weights, "_hub_reachable", lambda: False)
    monkeypatch.setattr(hhlib.weights, "_cached_on_disk", lambda: False)
    _, model = small_nest_and_model()
    with pytest.raises(RuntimeError, match="ConnectionError: no network"):
        load_nest_weights(model)
