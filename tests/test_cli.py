"""The command line: help, model listing, and the demo end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    for command in ("models", "demo", "eval", "track", "track-dataset", "fewshot", "refer", "train"):
        assert re.search(rf"^ {{4}}{command}\s", text, flags=re.MULTILINE), command
    assert "FSSAM" in text and "ReferSAM" in text


def test_console_entry_point_runs_help():
    completed = subprocess.run(
        [sys.executable, "-m", "samkit.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert "usage: samkit" in completed.stdout


def test_models_lists_backbones_and_heads(capsys):
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    names = [line.split()[0] for line in lines]
    for name in ("sam2.1-hiera-tiny", "sam2-hiera-large", "sam-vit-b", "tiny-sam2"):
        assert name in names
    kinds = {line.split()[0]: tuple(line.split()[1:3]) for line in lines}
    assert kinds["sam-vit-h"] == ("backbone", "image")
    assert kinds["sam2long"] == kinds["sam2"] == ("head", "video")
    assert kinds["fssam"] == kinds["refersam"] == ("head", "image")
    assert names.index("sam2long") < names.index("tiny-sam2")
    assert captured.err == ""


def test_models_reports_a_broken_head_and_lists_the_others(capsys, monkeypatch):
    from samkit.registry import REGISTRY

    monkeypatch.setattr(REGISTRY, "spec_modules", REGISTRY.spec_modules + ("samkit.no_such_head.spec",))
    REGISTRY.refresh()
    try:
        assert main(["models"]) == 0
        captured = capsys.readouterr()
    finally:
        monkeypatch.undo()
        REGISTRY.refresh()
    assert "sam2long" in captured.out and "tiny-sam" in captured.out
    assert "samkit.no_such_head.spec (from samkit): ModuleNotFoundError: No module named 'samkit.no_such_head'" \
        in captured.err


@pytest.mark.slow
def test_demo_writes_masks_and_says_weights_are_untrained(tmp_path):
    import samkit
    from samkit.checkpoints import UntrainedWeightsWarning
    from samkit.commands.demo import (
        FEW_SHOT_BACKBONE,
        FEW_SHOT_OBJECT,
        REFERRED_OBJECT,
        REFERRING_BACKBONE,
        REFERRING_EXPRESSION,
        REFERRING_IMAGE_SIZE,
        REFERRING_TEXT_ENCODER,
    )
    from samkit.samples import synthetic_video

    out = tmp_path / "demo"
    # offline: the referring demo's text model is the packaged MiniLM, never a download
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-m", "samkit.cli", "demo", "--out", str(out), "--frames", "5",
                                "--device", "cpu"], capture_output=True, text=True, env=env, check=False)
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    assert "untrained" in text
    assert len(sorted((out / "sample_video").glob("*.jpg"))) == 5
    labels = np.asarray(Image.open(out / "image" / "masks.png"))
    assert labels.shape == (120, 160)
    assert set(np.unique(labels)) <= {0, 1, 2}
    overlay = np.asarray(Image.open(out / "image" / "overlay.png"))
    assert overlay.shape == (120, 160, 3)
    predictions = sorted((out / "sam2long" / "predictions" / "sample_video").glob("*.png"))
    assert [path.name for path in predictions] == [f"{index:05d}.png" for index in range(5)]
    assert (out / "sam2long" / "overlay.mp4").stat().st_size > 0
    assert "J&F" in text

    # the few-shot and referring heads: the written masks / overlays are what the python API gives for the
    # same inputs, and the printed IoU is the one of those masks against the sample's known ground truth
    sample = synthetic_video(num_frames=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        with samkit.load("fssam", backbone=FEW_SHOT_BACKBONE, device="cpu") as fssam:
            few_shot = fssam.predict(sample.frames[4], prompt=samkit.SupportSet([sample.frames[0]],
                                                                                [sample.masks[FEW_SHOT_OBJECT][0]]))
        with samkit.load("refersam", backbone=REFERRING_BACKBONE, text_encoder=REFERRING_TEXT_ENCODER,
                         image_size=REFERRING_IMAGE_SIZE, device="cpu") as refersam:
            referring = refersam.predict(sample.frames[0], prompt=samkit.Text(REFERRING_EXPRESSION))
    heads = (("fssam", "few-shot", few_shot, sample.frames[4], sample.masks[FEW_SHOT_OBJECT][4]),
             ("refersam", "referring", referring, sample.frames[0], sample.masks[REFERRED_OBJECT][0]))
    for name, label, result, image, truth in heads:
        written = np.asarray(Image.open(out / name / "masks.png"))
        assert written.shape == (120, 160)
        np.testing.assert_array_equal(written == 1, result.masks[0], err_msg=name)
        assert set(np.unique(written)) <= {0, 1}
        np.testing.assert_array_equal(np.asarray(Image.open(out / name / "overlay.png")), result.overlay(image))
        iou = (result.masks[0] & truth).sum() / (result.masks[0] | truth).sum()
        assert re.search(rf"^{label} \(.*IoU {iou:.3f} against", text, flags=re.MULTILINE), (name, iou, text)
    assert few_shot.masks[0].any(), "the few-shot demo's mask is empty"


def test_demo_skips_few_shot_and_referring_heads_with_a_sam2_checkpoint(tmp_path, capsys):
    import argparse

    from samkit.commands.demo import _HEAD_DEMOS
    from samkit.samples import synthetic_video

    args = argparse.Namespace(checkpoint=str(tmp_path / "sam2.1_hiera_tiny.pt"), device="cpu")
    sample = synthetic_video(num_frames=2)
    for name, command in (("fssam", "samkit fewshot"), ("refersam", "samkit refer")):
        assert _HEAD_DEMOS[name](args, "sam2.1-hiera-tiny", sample, tmp_path, tmp_path / name) is True
        text = capsys.readouterr().out
        assert "skipped" in text and "checkpoint" in text and command in text, text
        assert not (tmp_path / name).exists()


def test_unknown_backbone_is_reported_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backbone", "no-such-backbone"]) == 2
    assert "unknown model 'no-such-backbone'" in capsys.readouterr().err
    assert not out.exists()
