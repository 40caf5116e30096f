"""The public API surface: names, registry behaviour and errors."""

from __future__ import annotations

import pytest
import torch

import samkit
from samkit.api import resolve_device


def test_public_names_exist():
    for name in ("load", "list_models", "Segmenter", "Points", "Box", "Mask", "Text", "SupportSet",
                 "ImageResult", "VideoResult", "FrameResult", "InputError"):
        assert hasattr(samkit, name), name
    assert issubclass(samkit.InputError, ValueError)


def test_list_models_puts_heads_before_backbones():
    names = samkit.list_models()
    backbones = samkit.list_models(kind="backbone")
    heads = samkit.list_models(kind="head")
    assert names == heads + backbones
    assert {"sam2.1-hiera-tiny", "sam2.1-hiera-small", "sam2.1-hiera-base-plus", "sam2.1-hiera-large",
            "sam2-hiera-tiny", "sam2-hiera-small", "sam2-hiera-base-plus", "sam2-hiera-large",
            "sam-vit-b", "sam-vit-l", "sam-vit-h"} <= set(backbones)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(samkit.InputError, match="unknown model 'nope'.*sam2.1-hiera-tiny"):
        samkit.load("nope")


def test_backbone_name_cannot_take_another_backbone():
    with pytest.raises(samkit.InputError, match="itself a backbone"):
        samkit.load("tiny-sam2", backbone="sam-vit-b")


def test_auto_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_bad_device_string_is_an_input_error():
    with pytest.raises(samkit.InputError, match="not a valid torch device"):
        resolve_device("gpu-please")


def test_from_config_builds_the_named_model(tmp_path):
    config = tmp_path / "image.yaml"
    config.write_text("model: tiny-sam2\nimage_size: 128\n")
    segmenter = samkit.Segmenter.from_config(config, device="cpu")
    assert segmenter.config["image_size"] == 128
    assert segmenter.device == torch.device("cpu")


def test_from_config_without_model_key_is_an_input_error():
    with pytest.raises(samkit.InputError, match="'model' key"):
        samkit.Segmenter.from_config({"image_size": 128})
