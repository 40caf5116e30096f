"""``building.prepare``: the one build step (device, checkpoint resolution, seed, untrained warning)."""

from __future__ import annotations

import hashlib
import warnings

import huggingface_hub
import pytest
import torch
import torch.hub

import samkit
from samkit.backbones.registry import BACKBONES
from samkit.building import BuildPlan, prepare
from samkit.checkpoints import UntrainedWeightsWarning
from samkit.errors import InputError
from samkit.registry import REGISTRY, HeadSpec, WeightsSpec

WEIGHTS = WeightsSpec("test_trainable_weights.pth", hf_repo="someone/fewshot-weights", sha256=None)
HEAD = HeadSpec(name="test-trainable", builder="samkit.image.segmenter:build_image_segmenter", input_kind="image",
                prompt_types=("SupportSet",), description="a trainable head with published weights",
                weights=(WEIGHTS,))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty samkit cache, online, with downloads failing loudly unless a test fakes them."""
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAMKIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected download {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "home"


@pytest.fixture
def trainable_head():
    samkit.register(HEAD)
    yield HEAD
    REGISTRY.unregister(HEAD.name)


def test_no_checkpoint_is_an_untrained_seeded_plan_with_one_warning():
    with pytest.warns(UntrainedWeightsWarning, match="'sam2long'") as caught:
        plan = prepare("sam2long", device="cpu", seed=4)
    assert len(caught) == 1
    assert plan == BuildPlan(device=torch.device("cpu"), checkpoint=None, seed=4, trained=False)
    assert plan.config() == {"checkpoint": None, "trained": False, "seed": 4}


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed_is_an_input_error(seed):
    with pytest.raises(InputError, match="seed must be an int >= 0"):
        prepare("sam2long", device="cpu", seed=seed)


def test_local_file_is_a_trained_plan_without_warning(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = prepare("sam2long", device="cpu", checkpoint=path, known=BACKBONES["tiny-sam2"])
    assert plan.checkpoint == path and plan.trained
    assert plan.config() == {"checkpoint": str(path), "trained": True, "seed": None}


def test_known_backbone_id_resolves_to_the_cache(home):
    cached = home / "checkpoints" / "sam2.1_hiera_tiny.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    for checkpoint in ("sam2.1_hiera_tiny.pt", "facebook/sam2.1-hiera-tiny", "sam2.1-hiera-tiny"):
        plan = prepare("sam2long", device="cpu", checkpoint=checkpoint, known=BACKBONES["sam2.1-hiera-tiny"])
        assert plan.checkpoint == cached


def test_head_weights_resolve_download_once_and_check_the_sha256(home, monkeypatch, trainable_head):
    calls = []

    def download(repo_id, filename, *, local_dir, **kwargs):
        calls.append((repo_id, filename))
        target = local_dir / filename
        target.write_bytes(b"published weights")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    plan = prepare(trainable_head, device="cpu", checkpoint="someone/fewshot-weights")
    assert plan.checkpoint == home / "checkpoints" / "test_trainable_weights.pth" and plan.trained
    assert prepare(trainable_head, device="cpu", checkpoint="test_trainable_weights.pth").checkpoint == plan.checkpoint
    assert calls == [("someone/fewshot-weights", "test_trainable_weights.pth")]
    good = hashlib.sha256(b"published weights").hexdigest()
    assert prepare(trainable_head, device="cpu", checkpoint="test_trainable_weights.pth",
                   known=(WeightsSpec("test_trainable_weights.pth", sha256=good),)).checkpoint == plan.checkpoint
    with pytest.raises(InputError, match="does not match the published sha256"):
        prepare(trainable_head, device="cpu", checkpoint="test_trainable_weights.pth",
                known=(WeightsSpec("test_trainable_weights.pth", sha256="0" * 64),))


def test_offline_unknown_and_missing_head_weights_are_explained(home, monkeypatch, trainable_head):
    with pytest.raises(InputError, match="does not exist; give a local checkpoint file or one of the published "
                                         "weights of head 'test-trainable': test_trainable_weights.pth, someone/fewshot-weights"):
        prepare(trainable_head, device="cpu", checkpoint="nope.pth")
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    with pytest.raises(InputError, match="not cached and downloads are off.*put it at .*test_trainable_weights.pth"):
        prepare(trainable_head, device="cpu", checkpoint="test_trainable_weights.pth")


def test_a_checkpoint_of_another_head_is_named(home, tmp_path, trainable_head):
    with pytest.raises(InputError, match="holds the weights of the head 'test-trainable', not of 'sam2long'"):
        prepare("sam2long", device="cpu", checkpoint="test_trainable_weights.pth", known=BACKBONES["tiny-sam2"])
    renamed = tmp_path / "test_trainable_weights.pth"
    renamed.write_bytes(b"x")
    with pytest.raises(InputError, match="holds the weights of the head 'test-trainable'"):
        samkit.load("tiny-sam2", device="cpu", checkpoint=renamed)
    with pytest.raises(InputError, match="official checkpoint of backbone 'sam2.1-hiera-large', not of backbone "
                                         "'tiny-sam2'"):
        samkit.load("sam2long", backbone="tiny-sam2", device="cpu", checkpoint="sam2.1_hiera_large.pt")


def test_bad_checkpoint_types_and_devices_are_input_errors():
    with pytest.raises(InputError, match="checkpoint must be a file path or a known model id, got int"):
        prepare("sam2long", device="cpu", checkpoint=3)
    with pytest.raises(InputError, match="not a valid torch device"):
        prepare("sam2long", device="tpu-ish")
