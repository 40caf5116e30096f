"""The command line: help, model listing, and the demo end to end."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
from PIL import Image

from samkit.cli import main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    for command in ("models", "demo", "eval", "track", "track-dataset"):
        assert re.search(rf"^ {{4}}{command}\s", text, flags=re.MULTILINE), command
    assert "planned" in text


def test_console_entry_point_runs_help():
    completed = subprocess.run(
        [sys.executable, "-m", "samkit.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert "usage: samkit" in completed.stdout


def test_models_lists_backbones_heads_and_planned_heads(capsys):
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    names = [line.split()[0] for line in lines]
    for name in ("sam2.1-hiera-tiny", "sam2-hiera-large", "sam-vit-b", "tiny-sam2"):
        assert name in names
    kinds = {line.split()[0]: tuple(line.split()[1:3]) for line in lines}
    assert kinds["sam-vit-h"] == ("backbone", "image")
    assert kinds["sam2long"] == kinds["sam2"] == ("head", "video")
    assert kinds["fssam"] == ("planned", "image")
    assert kinds["refersam"] == ("head", "image")
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


def test_demo_writes_masks_and_says_weights_are_untrained(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "5"]) == 0
    text = capsys.readouterr().out
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


def test_unknown_backbone_is_reported_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backbone", "no-such-backbone"]) == 2
    assert "unknown model 'no-such-backbone'" in capsys.readouterr().err
    assert not out.exists()
