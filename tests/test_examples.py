"""The examples run end to end, and each notebook is the script it is generated from."""

from __future__ import annotations

import importlib.util
import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_notebooks", EXAMPLES / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def region_j(pred, gt):
    """IoU, 1 for two empty masks (DAVIS)."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else np.logical_and(pred, gt).sum() / union


def boundary_map(mask):
    """A pixel is on the boundary if it differs from its right, lower or lower-right neighbour (DAVIS)."""
    right, below, diagonal = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    right[:, :-1], below[:-1, :], diagonal[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ diagonal)
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def matched(points, others, radius):
    """How many of ``points`` lie within ``radius`` (Euclidean) of one of ``others``."""
    if len(points) == 0 or len(others) == 0:
        return 0
    distances = ((points[:, None, :] - others[None, :, :]) ** 2).sum(axis=-1)
    return int((distances <= radius**2).any(axis=1).sum())


def boundary_f(pred, gt):
    """DAVIS boundary F-measure, tolerance ceil(0.008 * image diagonal), written from its definition."""
    radius = math.ceil(0.008 * math.hypot(*gt.shape))
    pred_points, gt_points = np.argwhere(boundary_map(pred)), np.argwhere(boundary_map(gt))
    if len(pred_points) == 0 or len(gt_points) == 0:
        precision = 1.0 if len(pred_points) == 0 else 0.0
        recall = 1.0 if len(gt_points) == 0 else 0.0
    else:
        precision = matched(pred_points, gt_points, radius) / len(pred_points)
        recall = matched(gt_points, pred_points, radius) / len(gt_points)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


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
    predicted = np.stack([np.asarray(Image.open(path)) for path in saved])
    truth = sample.label_maps()
    scored = range(1, sample.num_frames - 1)  # the first and last annotated frames are not scored
    expected_j, expected_f = [], []
    for obj_id in (1, 2):
        score = scores.per_object[f"occlusion/{obj_id:03d}"]
        pairs = [(predicted[t] == obj_id, truth[t] == obj_id) for t in scored]
        j = np.mean([region_j(pred, gt) for pred, gt in pairs])
        f = np.mean([boundary_f(pred, gt) for pred, gt in pairs])
        assert score.J == pytest.approx(j, abs=1e-12) and score.F == pytest.approx(f, abs=1e-12)
        expected_j.append(j)
        expected_f.append(f)
    assert scores.J == pytest.approx(np.mean(expected_j), abs=1e-12)
    assert scores.F == pytest.approx(np.mean(expected_f), abs=1e-12)
    assert scores.JF == pytest.approx((np.mean(expected_j) + np.mean(expected_f)) / 2, abs=1e-12)
    sheet = Image.open(tmp_path / "overlays.png")
    assert sheet.size == (160 * len(frames[::3]), 120)
    assert (tmp_path / "overlay.mp4").stat().st_size > 0
