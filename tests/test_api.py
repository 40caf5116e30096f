"""The public API: what ``import samkit`` gives, the one loading contract, configs and devices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import samkit
from samkit.api import resolve_device
from samkit.checkpoints import UntrainedWeightsWarning
from samkit.image.segmenter import ImageSegmenter
from samkit.longvideo import LongVideoSegmenter

pytestmark = pytest.mark.filterwarnings("ignore::samkit.checkpoints.UntrainedWeightsWarning")


def test_public_types_behave():
    assert issubclass(samkit.InputError, ValueError)
    with pytest.raises(samkit.InputError):
        samkit.Points([[-1, 0]])
    assert samkit.Box([1, 2, 3, 4]).xyxy.tolist() == [1, 2, 3, 4]
    assert samkit.Mask(np.eye(3, dtype=bool)).mask.sum() == 3
    assert samkit.Text("a dog").text == "a dog"
    result = samkit.ImageResult(masks=np.ones((1, 2, 2), bool), scores=np.ones(1, np.float32))
    assert result.masks.shape == (1, 2, 2)
    assert issubclass(ImageSegmenter, samkit.Segmenter) and issubclass(LongVideoSegmenter, samkit.Segmenter)
    assert isinstance(samkit.registry.get_spec("sam2long"), samkit.HeadSpec)
    with pytest.raises(TypeError, match="abstract"):
        samkit.Segmenter()


def test_list_models_puts_heads_before_backbones():
    names = samkit.list_models()
    backbones = samkit.list_models(kind="backbone")
    heads = samkit.list_models(kind="head")
    assert names == heads + backbones
    assert {"sam2.1-hiera-tiny", "sam2.1-hiera-small", "sam2.1-hiera-base-plus", "sam2.1-hiera-large",
            "sam2-hiera-tiny", "sam2-hiera-small", "sam2-hiera-base-plus", "sam2-hiera-large",
            "sam-vit-b", "sam-vit-l", "sam-vit-h", "tiny-sam2", "tiny-sam"} == set(backbones)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(samkit.InputError, match="unknown model 'nope'.*sam2.1-hiera-tiny"):
        samkit.load("nope")
    with pytest.raises(samkit.InputError, match="takes a model name"):
        samkit.load(None)


def test_backbone_name_cannot_take_another_backbone():
    with pytest.raises(samkit.InputError, match="itself a backbone"):
        samkit.load("tiny-sam2", backbone="sam-vit-b")
    with pytest.raises(samkit.InputError, match="not backbone_checkpoint"):
        samkit.load("tiny-sam2", backbone_checkpoint="x.pt")
    with pytest.raises(samkit.InputError, match="training-free.*not backbone_checkpoint"):
        samkit.load("sam2long", backbone="tiny-sam2", backbone_checkpoint="x.pt")


def test_unknown_options_are_named_with_the_accepted_ones():
    with pytest.raises(samkit.InputError, match=r"unknown option\(s\) \['pathways', 'speed'\] for 'sam2long'; "
                                                r"accepted: backbone, checkpoint, backbone_checkpoint, device, tree, "
                                                r"image_size, seed, apply_postprocessing"):
        samkit.load("sam2long", pathways=3, speed=2)


def test_load_builds_the_registered_head_on_the_requested_device():
    segmenter = samkit.load("tiny-sam", device="cpu", seed=3, image_size=64)
    assert type(segmenter) is ImageSegmenter and segmenter.spec.name == "tiny-sam"
    assert segmenter.device == torch.device("cpu")
    assert segmenter.config == {"name": "tiny-sam", "backbone": "tiny-sam", "family": "sam", "image_size": 64,
                                "checkpoint": None, "trained": False, "seed": 3}
    assert repr(segmenter) == "ImageSegmenter(model='tiny-sam', device=cpu)"


def test_auto_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_bad_device_string_is_an_input_error():
    with pytest.raises(samkit.InputError, match="not a valid torch device"):
        resolve_device("gpu-please")


def test_from_config_builds_the_named_model(tmp_path):
    config = tmp_path / "image.yaml"
    config.write_text("model: tiny-sam2\nimage_size: 64\nseed: 2\n")
    segmenter = samkit.Segmenter.from_config(config, device="cpu")
    assert segmenter.config["image_size"] == 64 and segmenter.config["seed"] == 2
    assert segmenter.device == torch.device("cpu")


def test_from_config_with_device_in_the_yaml(tmp_path):
    config = tmp_path / "image.yaml"
    config.write_text("model: tiny-sam\ndevice: cpu\nimage_size: 64\n")
    assert samkit.Segmenter.from_config(config).device == torch.device("cpu")
    with pytest.raises(samkit.InputError, match="device given both in the config and as an argument"):
        samkit.Segmenter.from_config(config, device="cpu")
    with pytest.raises(samkit.InputError, match="image_size given both"):
        samkit.Segmenter.from_config(config, image_size=128)


def test_from_config_checks_the_class_and_the_model_key():
    with pytest.raises(samkit.InputError, match="'model' key"):
        samkit.Segmenter.from_config({"image_size": 128})
    with pytest.raises(samkit.InputError, match="builds a ImageSegmenter, not a LongVideoSegmenter"):
        LongVideoSegmenter.from_config({"model": "tiny-sam", "image_size": 64})


def test_untrained_warning_is_issued_once_per_load():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samkit.load("tiny-sam", device="cpu", image_size=64)
    untrained = [item for item in caught if issubclass(item.category, UntrainedWeightsWarning)]
    assert len(untrained) == 1 and "'tiny-sam'" in str(untrained[0].message)
