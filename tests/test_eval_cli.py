"""``samkit eval vos``: the CLI prints what ``samkit.metrics.vos.evaluate`` computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.metrics.vos import evaluate

SIDE = 20


def write_labels(path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette([channel for index in range(256) for channel in (index, index, 255 - index)])
    image.save(path)


@pytest.fixture
def roots(tmp_path):
    """Two videos of four frames: GT square rows/cols 5..14; the prediction is the square shifted right
    by 2 (J = 80 / 120) on frames 1..2 of video a, exact on video b, and empty on every first / last frame."""
    gt = np.zeros((SIDE, SIDE), dtype=np.uint8)
    gt[5:15, 5:15] = 1
    shifted = np.zeros_like(gt)
    shifted[5:15, 7:17] = 1
    for video, middle in (("a", shifted), ("b", gt)):
        for t in range(4):
            write_labels(tmp_path / "gt" / video / f"{t:05d}.png", gt)
            pred = middle if t in (1, 2) else np.zeros_like(gt)
            write_labels(tmp_path / "pred" / video / f"{t:05d}.png", pred)
    return tmp_path / "gt", tmp_path / "pred"


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_json_output_matches_the_python_api(capsys, roots):
    gt_root, pred_root = roots
    printed = run_json(capsys, ["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root), "--json"])
    assert set(printed) == {"J", "F", "J&F", "per_object"}
    assert printed == evaluate(gt_root, pred_root).to_dict()
    assert set(printed["per_object"]) == {"a/001", "b/001"}
    # middle frames only: video a scores J = 2/3, video b J = 1 -> overall J = 5/6
    assert printed["per_object"]["a/001"]["J"] == pytest.approx(2 / 3)
    assert printed["per_object"]["b/001"] == {"J": 1.0, "F": 1.0}
    assert printed["J"] == pytest.approx(5 / 6)
    assert printed["J&F"] == pytest.approx((printed["J"] + printed["F"]) / 2)


def test_keep_first_last_layout_and_workers_are_passed_through(capsys, roots):
    gt_root, pred_root = roots
    argv = ["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root), "--json", "--keep-first-last"]
    printed = run_json(capsys, argv + ["--layout", "davis", "--workers", "2"])
    assert printed == evaluate(gt_root, pred_root, skip_first_last=False).to_dict()
    # the empty first / last predictions now count: video b scores J = 2 / 4
    assert printed["per_object"]["b/001"]["J"] == pytest.approx(0.5)


def test_videos_option_restricts_the_evaluation(capsys, roots, tmp_path):
    gt_root, pred_root = roots
    listing = tmp_path / "val.txt"
    listing.write_text("b\n")
    printed = run_json(
        capsys,
        ["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root), "--json", "--videos", str(listing)],
    )
    assert set(printed["per_object"]) == {"b/001"}
    printed = run_json(
        capsys, ["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root), "--json", "--videos", "a"]
    )
    assert set(printed["per_object"]) == {"a/001"}


def test_table_output_in_percent(capsys, roots):
    gt_root, pred_root = roots
    assert main(["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = evaluate(gt_root, pred_root)
    global_line = next(line for line in lines if line.startswith("Global score"))
    assert global_line.split()[2:] == [f"{100 * value:.1f}" for value in (result.JF, result.J, result.F)]
    assert any(line.startswith("a/001") and line.split()[2] == "66.7" for line in lines)


def test_missing_predictions_warn_and_strict_fails(capsys, roots):
    gt_root, pred_root = roots
    (pred_root / "a" / "00001.png").unlink()
    assert main(["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["per_object"]["a/001"]["J"] == pytest.approx((0 + 2 / 3) / 2)
    assert "1 prediction files are missing" in captured.err
    assert main(["eval", "vos", "--gt", str(gt_root), "--pred", str(pred_root), "--strict"]) == 2
    assert "00001.png" in capsys.readouterr().err


def test_bad_root_exits_with_an_error_message(capsys, tmp_path, roots):
    _, pred_root = roots
    assert main(["eval", "vos", "--gt", str(tmp_path / "absent"), "--pred", str(pred_root)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_eval_without_task_prints_help(capsys):
    assert main(["eval"]) == 2
    assert "vos" in capsys.readouterr().err
