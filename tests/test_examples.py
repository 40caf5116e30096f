"""The examples run end to end, and each notebook is the script it is generated from."""

from __future__ import annotations

import importlib.util
import json
import runpy
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_notebooks", EXAMPLES / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_matches_its_script():
    sync = _sync_module()
    scripts = [path for path in EXAMPLES.glob("*.py") if path.name != "sync_notebooks.py"]
    assert scripts
    for script in scripts:
        expected = sync.notebook(sync.script_cells(script.read_text()))
        actual = json.loads(script.with_suffix(".ipynb").read_text())
        assert actual == expected, f"{script.name} changed: run python examples/sync_notebooks.py"


def test_long_video_example_tracks_and_scores_two_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMKIT_EXAMPLE_OUT", str(tmp_path))
    namespace = runpy.run_path(str(EXAMPLES / "long_video.py"))
    frames = namespace["frames"]
    sample = namespace["sample"]
    assert [frame.frame_idx for frame in frames] == list(range(sample.num_frames))
    assert all(sorted(frame.masks) == [1, 2] for frame in frames)
    np.testing.assert_array_equal(frames[0].masks[1].shape, sample.masks[1][0].shape)

    saved = sorted((tmp_path / "predictions" / "occlusion").glob("*.png"))
    assert len(saved) == sample.num_frames
    labels = np.asarray(Image.open(saved[5]))
    np.testing.assert_array_equal(labels == 2, frames[5].masks[2])

    scores = namespace["scores"]
    assert set(scores.per_object) == {"occlusion/001", "occlusion/002"}
    assert 0.0 <= scores.JF <= 1.0
    assert abs(scores.JF - (scores.J + scores.F) / 2) < 1e-12
    sheet = Image.open(tmp_path / "overlays.png")
    assert sheet.size == (160 * len(frames[::3]), 120)
    assert (tmp_path / "overlay.mp4").stat().st_size > 0
