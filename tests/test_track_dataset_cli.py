"""``samkit track-dataset`` on tiny DAVIS / SA-V / LVOS trees: outputs ``samkit eval vos`` scores, re-runs
that skip finished videos, failures that do not stop the run, and shards."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.cli import main
from samkit.commands import track_dataset
from samkit.io.masks import write_binary_png, write_palette_png
from samkit.io.video import FolderVideo
from samkit.longvideo import LongVideoSegmenter
from samkit.results import FrameResult, VideoResult
from samkit.samples import synthetic_video

HEIGHT, WIDTH = 48, 64
MODEL = ["--backbone", "tiny-sam2", "--device", "cpu", "--tree", "sam2"]
SAV_STRIDE = 4
"""SA-V frames are at 24 fps and annotations at 6 fps: one annotated frame in four."""
SAV_FRAMES = 2 * SAV_STRIDE + 1  # three annotated frames, so one is left after skipping the first and last


def stems(count: int) -> list[str]:
    return [f"{index:05d}" for index in range(count)]


def write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for stem, frame in zip(stems(len(frames)), frames):
        Image.fromarray(frame).save(folder / f"{stem}.jpg", quality=95)


def write_davis_video(root: Path, name: str, seed: int, num_frames: int = 5) -> None:
    """DAVIS 2017: JPEG frames, palette annotations of both objects on every frame (top row void)."""
    video = synthetic_video(num_frames=num_frames, height=HEIGHT, width=WIDTH, seed=seed)
    write_frames(root / "JPEGImages" / "480p" / name, video.frames)
    for stem, labels in zip(stems(num_frames), video.label_maps()):
        labels[0] = 255
        write_palette_png(root / "Annotations" / "480p" / name / f"{stem}.png", labels)


def run_cli(*argv: str) -> int:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(list(argv))


def evaluate(capsys, gt: Path, pred: Path, *options: str) -> dict:
    capsys.readouterr()
    assert run_cli("eval", "vos", "--gt", str(gt), "--pred", str(pred), "--json", *options) == 0
    captured = capsys.readouterr()
    assert "missing" not in captured.err
    scores = json.loads(captured.out)
    for value in (scores["J"], scores["F"], scores["J&F"]):
        assert 0.0 <= value <= 1.0
    return scores


def output_times(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*.png")}


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture
def predict_calls(monkeypatch):
    """Frame folders ``LongVideoSegmenter.predict`` is called on (the real model still runs)."""
    calls = []
    predict = LongVideoSegmenter.predict

    def counting(self, video, prompts=None, **options):
        calls.append((Path(video).name, prompts))
        return predict(self, video, prompts=prompts, **options)

    monkeypatch.setattr(LongVideoSegmenter, "predict", counting)
    return calls


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    """DAVIS root with val videos bear, camel and train video dog, tracked once with ``--split val``."""
    root = tmp_path_factory.mktemp("DAVIS")
    for seed, name in enumerate(("bear", "camel", "dog")):
        write_davis_video(root, name, seed)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("bear\ncamel\n")
    out = tmp_path_factory.mktemp("davis_predictions")
    assert run_cli("track-dataset", "--data", str(root), "--layout", "davis", "--split", "val",
                   "--out", str(out), *MODEL) == 0
    return root, out


def test_davis_outputs_are_scored_by_eval_vos(davis, capsys):
    root, out = davis
    assert sorted(path.name for path in out.iterdir()) == ["bear", "camel"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sam2 = samkit.load("sam2", backbone="tiny-sam2", device="cpu")
    for name in ("bear", "camel"):
        assert sorted(path.stem for path in (out / name).glob("*.png")) == stems(5)
        labels = np.stack([np.asarray(Image.open(out / name / f"{stem}.png")) for stem in stems(5)])
        assert labels.shape == (5, HEIGHT, WIDTH) and set(np.unique(labels[0])) == {0, 1, 2}
        first = np.asarray(Image.open(root / "Annotations" / "480p" / name / "00000.png"))
        prompts = {obj_id: samkit.Mask(first == obj_id) for obj_id in (1, 2)}
        with sam2.predict(root / "JPEGImages" / "480p" / name, prompts=prompts) as result:
            expected = np.stack([frame.label_map((HEIGHT, WIDTH)) for frame in result])
        np.testing.assert_array_equal(labels, expected)  # exactly the python API's masks
    val = root / "ImageSets" / "2017" / "val.txt"
    for protocol in ("sav", "davis"):
        options = ("--videos", str(val), "--protocol", protocol)
        scores = evaluate(capsys, root / "Annotations" / "480p", out, *options)
        assert set(scores["per_object"]) == {"bear/001", "bear/002", "camel/001", "camel/002"}


def test_rerun_skips_complete_videos_and_redoes_incomplete_ones(davis, tmp_path, predict_calls, capsys):
    root, first_run = davis
    out = tmp_path / "predictions"
    shutil.copytree(first_run, out)
    before = output_times(out)
    argv = ["track-dataset", "--data", str(root), "--layout", "davis", "--split", "val", "--out", str(out),
            *MODEL]
    assert run_cli(*argv) == 0
    assert predict_calls == []
    assert output_times(out) == before
    assert "2 already complete, 0 to track" in capsys.readouterr().out

    (out / "camel" / "00003.png").unlink()
    assert run_cli(*argv) == 0
    assert [name for name, _ in predict_calls] == ["camel"]
    after = output_times(out)
    assert sorted(after) == sorted(before)
    assert all(after[key] == before[key] for key in before if key.startswith("bear"))
    restored = np.asarray(Image.open(out / "camel" / "00003.png"))
    np.testing.assert_array_equal(restored, np.asarray(Image.open(first_run / "camel" / "00003.png")))


def test_sav_objects_go_to_their_annotation_folders(tmp_path, predict_calls, capsys):
    """SA-V: 24 fps frames, 6 fps binary annotations per object folder; object 001 appears on frame 4."""
    root = tmp_path / "sav"
    video = synthetic_video(num_frames=SAV_FRAMES, height=HEIGHT, width=WIDTH, seed=4)
    write_frames(root / "JPEGImages_24fps" / "sav_000001", video.frames)
    annotated = range(0, SAV_FRAMES, SAV_STRIDE)
    for folder, obj_id in (("000", 1), ("001", 2)):
        for index in annotated:
            visible = obj_id == 1 or index >= SAV_STRIDE
            mask = video.masks[obj_id][index] & visible
            write_binary_png(root / "Annotations_6fps" / "sav_000001" / folder / f"{index:05d}.png", mask)
    (root / "sav_val.txt").write_text("sav_000001\n")
    out = tmp_path / "predictions"
    assert run_cli("track-dataset", "--data", str(root), "--layout", "sav", "--split", "sav_val",
                   "--out", str(out), *MODEL) == 0
    (_, prompts), = predict_calls
    assert {obj_id: prompt.frame for obj_id, prompt in prompts.items()} == {1: 0, 2: SAV_STRIDE}
    predicted = out / "sav_000001"
    assert sorted(path.name for path in predicted.iterdir()) == ["000", "001"]
    assert sorted(path.stem for path in (predicted / "000").glob("*.png")) == stems(SAV_FRAMES)
    assert sorted(path.stem for path in (predicted / "001").glob("*.png")) == stems(SAV_FRAMES)[SAV_STRIDE:]
    scores = evaluate(capsys, root / "Annotations_6fps", out)
    assert set(scores["per_object"]) == {"sav_000001/000", "sav_000001/001"}


def test_lvos_object_appearing_later_is_prompted_where_it_appears(tmp_path, predict_calls, capsys):
    root = tmp_path / "LVOS"
    video = synthetic_video(num_frames=5, height=HEIGHT, width=WIDTH, seed=5)
    write_frames(root / "valid" / "JPEGImages" / "lvos_a", video.frames)
    for index, labels in enumerate(video.label_maps()):
        if index < 2:
            labels[labels == 2] = 0  # object 2 enters on frame 2
        write_palette_png(root / "valid" / "Annotations" / "lvos_a" / f"{index:05d}.png", labels)
    out = tmp_path / "predictions"
    assert run_cli("track-dataset", "--data", str(root), "--layout", "lvos", "--out", str(out), *MODEL) == 0
    (_, prompts), = predict_calls
    assert {obj_id: prompt.frame for obj_id, prompt in prompts.items()} == {1: 0, 2: 2}
    np.testing.assert_array_equal(prompts[2].mask, video.masks[2][2])
    labels = np.stack([np.asarray(Image.open(out / "lvos_a" / f"{stem}.png")) for stem in stems(5)])
    assert 2 not in labels[:2] and 2 in labels[2]
    scores = evaluate(capsys, root / "valid" / "Annotations", out)
    assert set(scores["per_object"]) == {"lvos_a/001", "lvos_a/002"}


def test_failing_videos_are_reported_and_the_others_complete(tmp_path, capsys):
    root = tmp_path / "DAVIS"
    for seed, name in enumerate(("a_bad_frame", "b_bad_annotation", "c_fine")):
        write_davis_video(root, name, seed)
    (root / "JPEGImages" / "480p" / "a_bad_frame" / "00002.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (WIDTH, HEIGHT)).save(root / "Annotations" / "480p" / "b_bad_annotation" / "00000.png")
    out = tmp_path / "predictions"
    assert run_cli("track-dataset", "--data", str(root), "--layout", "davis", "--out", str(out), *MODEL) == 1
    captured = capsys.readouterr()
    assert "video a_bad_frame failed: InputError: cannot read image file" in captured.err
    assert "00002.jpg" in captured.err
    assert "video b_bad_annotation failed: InputError:" in captured.err and "mode 'RGB'" in captured.err
    assert "Traceback" not in captured.err  # bad data is one line; only unexpected errors get a traceback
    assert "done: 1 tracked, 0 already complete, 2 failed (b_bad_annotation, a_bad_frame)" in captured.out
    assert not (out / "a_bad_frame" / "00004.png").exists()
    # the video after the failure is tracked exactly as on its own
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sam2 = samkit.load("sam2", backbone="tiny-sam2", device="cpu")
    annotation = np.asarray(Image.open(root / "Annotations" / "480p" / "c_fine" / "00000.png"))
    prompts = {obj_id: samkit.Mask(annotation == obj_id) for obj_id in (1, 2)}
    for frame in sam2.predict(root / "JPEGImages" / "480p" / "c_fine", prompts=prompts):
        written = np.asarray(Image.open(out / "c_fine" / f"{frame.frame_idx:05d}.png"))
        np.testing.assert_array_equal(written, frame.label_map((HEIGHT, WIDTH)))


# ------------------------------------------------------------------ shards, with a stand-in tracker


class AnnotationTracker:
    """Stands in for the model: every object keeps its prompt mask from its prompt frame on."""

    def __init__(self) -> None:
        self.videos: list[str] = []

    def predict(self, video, prompts):
        self.videos.append(Path(video).name)
        source = FolderVideo(video)
        start = min(prompt.frame for prompt in prompts.values())
        frames = [
            FrameResult(index, {obj_id: p.mask for obj_id, p in prompts.items() if p.frame <= index})
            for index in range(start, source.num_frames)
        ]
        return VideoResult(frames, height=source.height, width=source.width, frame_names=source.frame_names)


@pytest.fixture
def stand_in(monkeypatch):
    """Replaces the model; records the device each ``build_tracker`` call asked for."""
    tracker = AnnotationTracker()
    devices = []

    def build(args, device=None):
        devices.append(device)
        return tracker

    monkeypatch.setattr(track_dataset, "build_tracker", build)
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(variable, raising=False)
    return tracker, devices


VIDEOS = [f"video{index}" for index in range(5)]


@pytest.fixture(scope="module")
def five_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("five")
    for seed, name in enumerate(VIDEOS):
        write_davis_video(root, name, seed, num_frames=2)
    return root


def track_shard(root: Path, out: Path, *options: str) -> int:
    return run_cli("track-dataset", "--data", str(root), "--layout", "davis", "--out", str(out),
                   "--device", "auto", *options)


def test_shards_partition_the_videos(five_videos, tmp_path, stand_in):
    tracker, _ = stand_in
    shards = []
    for index in range(2):
        out = tmp_path / f"shard{index}"
        assert track_shard(five_videos, out, "--shard", f"{index}/2") == 0
        shards.append({path.name for path in out.iterdir()})
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(VIDEOS)
    assert sorted(tracker.videos) == VIDEOS


def test_torchrun_rank_picks_its_shard_and_gpu(five_videos, tmp_path, stand_in, monkeypatch):
    _, devices = stand_in
    assert track_shard(five_videos, tmp_path / "explicit", "--shard", "1/2") == 0
    explicit = {path.name for path in (tmp_path / "explicit").iterdir()}
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert track_shard(five_videos, tmp_path / "torchrun") == 0
    assert {path.name for path in (tmp_path / "torchrun").iterdir()} == explicit
    assert devices == ["auto", "cuda:1"]


def test_unexpected_errors_are_reported_with_a_traceback(five_videos, tmp_path, stand_in, monkeypatch,
                                                         capsys):
    tracker, _ = stand_in

    def broken(video, prompts):
        raise TypeError(f"bug while tracking {Path(video).name}")

    monkeypatch.setattr(tracker, "predict", broken)
    assert track_shard(five_videos, tmp_path / "out", "--shard", "0/2") == 1
    err = capsys.readouterr().err
    for name in VIDEOS[::2]:
        assert f"video {name} failed: TypeError: bug while tracking {name}" in err
    assert err.count("Traceback (most recent call last)") == 3


def test_an_empty_shard_builds_no_model(five_videos, tmp_path, stand_in, capsys):
    _, devices = stand_in
    assert track_shard(five_videos, tmp_path / "out", "--shard", "6/8") == 0
    assert devices == []
    assert "0 videos" in capsys.readouterr().out


@pytest.mark.parametrize("shard, environ, message", [
    ("2/2", {}, "--shard '2/2': need N >= 1 and 0 <= I < N"),
    ("a/b", {}, "--shard 'a/b': expected \"I/N\""),
    (None, {"RANK": "x", "WORLD_SIZE": "2"}, "RANK/WORLD_SIZE (torchrun) 'x/2'"),
    (None, {"RANK": "2", "WORLD_SIZE": "2"}, "need N >= 1 and 0 <= I < N"),
])
def test_bad_shards_exit_2(five_videos, tmp_path, stand_in, monkeypatch, capsys, shard, environ, message):
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    assert track_shard(five_videos, tmp_path / "out", *(["--shard", shard] if shard else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("samkit track-dataset: error: ") and message in err
    assert not os.path.exists(tmp_path / "out")
