"""Safe checkpoint loading: official layouts load strictly, code never runs, mismatches are named."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from samkit.backbones.sam2_models import build_sam2_model
from samkit.backbones.tiny import build_tiny_sam, build_tiny_sam2
from samkit.checkpoints import group_keys, load_into, load_state_dict, save_checkpoint
from samkit.errors import InputError


@pytest.fixture(scope="module")
def sam2_model():
    return build_tiny_sam2(seed=0)


@pytest.fixture(scope="module")
def sam_model():
    return build_tiny_sam(seed=0)


def assert_same_parameters(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    expected = reference.state_dict()
    actual = model.state_dict()
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_official_sam2_layout_loads_strictly_into_a_fresh_model(tmp_path, sam2_model):
    path = tmp_path / "sam2.1_tiny.pt"
    torch.save({"model": sam2_model.state_dict()}, path)
    fresh = build_tiny_sam2(seed=1)
    assert not torch.equal(fresh.no_mem_embed, sam2_model.no_mem_embed)
    report = load_into(fresh, path)
    assert report.missing == [] and report.unexpected == []
    assert_same_parameters(fresh, sam2_model)


def test_bare_sam_state_dict_loads_strictly(tmp_path, sam_model):
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(sam_model.state_dict(), path)
    fresh = build_tiny_sam(seed=1)
    load_into(fresh, path)
    assert_same_parameters(fresh, sam_model)


def test_ddp_prefix_and_nested_wrappers_are_removed(tmp_path, sam_model):
    path = tmp_path / "ddp.bin"
    wrapped = {"epoch": 3, "state_dict": {"model": {f"module.{k}": v for k, v in sam_model.state_dict().items()}}}
    torch.save(wrapped, path)
    state = load_state_dict(path)
    assert state.keys() == sam_model.state_dict().keys()
    fresh = build_tiny_sam(seed=2)
    load_into(fresh, state)
    assert_same_parameters(fresh, sam_model)


def test_safetensors_checkpoint_loads(tmp_path, sam2_model):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.clone().contiguous() for k, v in sam2_model.state_dict().items()}, str(path))
    fresh = build_tiny_sam2(seed=3)
    load_into(fresh, path)
    assert_same_parameters(fresh, sam2_model)


def test_checkpoint_with_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"weight": torch.zeros(2)}, "extra": Payload()}, path)
    with pytest.raises(InputError, match=r"refused.*evil\.pt.*never run code"):
        load_state_dict(path)
    assert not marker.exists()
    # The same file really does run code when unpickled without weights_only.
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(InputError, match=r"nope\.pt does not exist"):
        load_state_dict(path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_garbage_file_is_named(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(InputError, match=f"garbage\\{suffix}"):
        load_state_dict(path)


@pytest.mark.parametrize("content", [[1, 2, 3], {"a": 1, "b": "text"}, {}])
def test_non_state_dict_content_is_rejected(tmp_path, content):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(InputError, match=r"odd\.pt.*state_dict"):
        load_state_dict(path)


def test_missing_keys_are_grouped_by_prefix(tmp_path, sam2_model):
    state = sam2_model.state_dict()
    trunk_keys = [key for key in state if key.startswith("image_encoder.trunk.blocks.")]
    damaged = {key: value for key, value in state.items() if key not in trunk_keys and key != "no_mem_embed"}
    path = tmp_path / "damaged.pt"
    torch.save({"model": damaged}, path)
    with pytest.raises(InputError) as error:
        load_into(build_tiny_sam2(seed=1), path)
    message = str(error.value)
    assert "damaged.pt" in message
    assert f"missing keys ({len(trunk_keys) + 1})" in message
    assert f"image_encoder.trunk.blocks.*: {len(trunk_keys)} keys" in message
    assert "no_mem_embed: 1 key" in message


def test_unexpected_keys_and_shape_mismatches_are_named(sam_model):
    state = dict(sam_model.state_dict())
    state["extra_head.layers.0.weight"] = torch.zeros(1)
    state["extra_head.layers.1.weight"] = torch.zeros(1)
    state["mask_decoder.iou_token.weight"] = torch.zeros(2, 2)
    expected_shape = tuple(sam_model.state_dict()["mask_decoder.iou_token.weight"].shape)
    with pytest.raises(InputError) as error:
        load_into(build_tiny_sam(seed=1), state, what="test model")
    message = str(error.value)
    assert "unexpected keys (2)" in message and "extra_head.layers.*: 2 keys" in message
    assert f"mask_decoder.iou_token.weight: checkpoint (2, 2) vs test model {expected_shape}" in message


def test_non_strict_load_reports_missing_keys(sam_model):
    state = dict(sam_model.state_dict())
    del state["mask_decoder.iou_token.weight"]
    fresh = build_tiny_sam(seed=5)
    report = load_into(fresh, state, strict=False)
    assert report.missing == ["mask_decoder.iou_token.weight"]
    assert torch.equal(fresh.mask_decoder.mask_tokens.weight, sam_model.mask_decoder.mask_tokens.weight)


def test_group_keys_by_first_numeric_component():
    keys = ["a.blocks.0.w", "a.blocks.1.w", "a.blocks.1.b", "head.proj.weight", "head.proj.bias", "token"]
    assert group_keys(keys) == [
        ("a.blocks.*", 3, "a.blocks.0.w"),
        ("head.proj.*", 2, "head.proj.weight"),
        ("token", 1, "token"),
    ]


@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt.safetensors"])
def test_save_checkpoint_roundtrip_is_atomic(tmp_path, sam_model, name):
    path = tmp_path / "out" / name
    save_checkpoint(path, sam_model.state_dict(), epoch=4)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]
    fresh = build_tiny_sam(seed=9)
    load_into(fresh, path)
    assert_same_parameters(fresh, sam_model)
    if name.endswith(".pt"):
        assert torch.load(path, weights_only=True)["epoch"] == 4


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, sam_model):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"w": torch.ones(2)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="pickle"):
        save_checkpoint(path, sam_model.state_dict(), unpicklable=threading.Lock())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_build_sam2_model_loads_checkpoint_through_samkit(tmp_path, sam2_model):
    path = tmp_path / "tiny.pt"
    torch.save({"model": sam2_model.state_dict()}, path)
    loaded = build_sam2_model("tiny-sam2", checkpoint=path, seed=7)
    assert_same_parameters(loaded, sam2_model)
    torch.save({"model": {"wrong.key": torch.zeros(1)}}, path)
    with pytest.raises(InputError, match=r"(?s)tiny\.pt.*tiny-sam2 model.*missing keys"):
        build_sam2_model("tiny-sam2", checkpoint=Path(path))
