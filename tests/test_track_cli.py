"""``samkit track``: every prompt kind, frame options, output format and tree preset, and bad input."""

from __future__ import annotations

import json
import warnings

import av
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import samkit
from samkit.cli import main
from samkit.io.masks import write_palette_png
from samkit.longvideo import LongVideoSegmenter, TreeConfig
from samkit.samples import synthetic_video

NUM_FRAMES, HEIGHT, WIDTH = 5, 48, 64
STEMS = [f"frame_{index}" for index in range(1, NUM_FRAMES + 1)]  # natural order differs from plain sorting
MODEL = ["--backbone", "tiny-sam2", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def sample():
    return synthetic_video(num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH, seed=3)


@pytest.fixture(scope="module")
def data(sample, tmp_path_factory):
    """A frame folder, the two-object palette mask of frame 0, and object 1 as a binary 0/255 mask."""
    root = tmp_path_factory.mktemp("track")
    frames = root / "video"
    frames.mkdir()
    for stem, frame in zip(STEMS, sample.frames):
        Image.fromarray(frame).save(frames / f"{stem}.png")
    write_palette_png(root / "labels.png", sample.label_maps()[0])
    Image.fromarray(sample.masks[1][0].astype(np.uint8) * 255).save(root / "binary.png")
    return root


@pytest.fixture
def calls(monkeypatch):
    """Records (segmenter, prompts, keyword options) of every ``LongVideoSegmenter.predict`` call."""
    recorded = []
    predict = LongVideoSegmenter.predict

    def spy(self, video, prompts=None, **options):
        recorded.append((self, prompts, options))
        return predict(self, video, prompts=prompts, **options)

    monkeypatch.setattr(LongVideoSegmenter, "predict", spy)
    return recorded


def track(data, out, *options: str) -> int:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["track", str(data / "video"), "--out", str(out), *MODEL, *options])


def read_labels(folder, stems=STEMS) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / f"{stem}.png")) for stem in stems])


def png_names(folder) -> list[str]:
    return sorted(path.name for path in folder.glob("*.png"))


def names(stems) -> list[str]:
    return sorted(f"{stem}.png" for stem in stems)


def api_labels(video, prompts, head, **options) -> np.ndarray:
    """Label maps of the python API's masks for the same video and prompts (an independent model load)."""
    tree = options.pop("tree", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmenter = samkit.load(head, backbone="tiny-sam2", device="cpu", **({"tree": tree} if tree else {}))
    with segmenter.predict(video, prompts=prompts, **options) as result:
        return np.stack([frame.label_map((HEIGHT, WIDTH)) for frame in result])


@pytest.fixture(scope="module")
def davis_run(data, tmp_path_factory):
    """Both objects of the palette mask, tracked with ``--tree sam2`` through the whole video."""
    out = tmp_path_factory.mktemp("davis")
    assert track(data, out, "--mask", str(data / "labels.png"), "--tree", "sam2") == 0
    return out


def test_palette_mask_tracks_both_objects_and_sam2_tree_is_exactly_sam2(data, sample, davis_run):
    assert png_names(davis_run) == names(STEMS)
    labels = read_labels(davis_run)
    assert set(np.unique(labels[0])) == {0, 1, 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sam2 = samkit.load("sam2", backbone="tiny-sam2", device="cpu")
    prompts = {obj_id: samkit.Mask(sample.masks[obj_id][0]) for obj_id in (1, 2)}
    expected = [frame.label_map((HEIGHT, WIDTH)) for frame in sam2.predict(data / "video", prompts=prompts)]
    np.testing.assert_array_equal(labels, np.stack(expected))


@pytest.mark.parametrize("obj, expected_id", [(None, 1), ("3", 3)])
def test_binary_mask_is_object_one_or_obj(data, sample, tmp_path, calls, obj, expected_id):
    options = ["--mask", str(data / "binary.png"), "--tree", "sam2", "--max-frames", "1"]
    assert track(data, tmp_path, *options, *(["--obj", obj] if obj else [])) == 0
    (_, prompts, _), = calls
    assert list(prompts) == [expected_id]
    np.testing.assert_array_equal(prompts[expected_id].mask, sample.masks[1][0])
    assert png_names(tmp_path) == names(STEMS[:1])
    assert set(np.unique(read_labels(tmp_path, STEMS[:1]))) == {0, expected_id}


def test_obj_picks_one_object_of_a_label_map(data, sample, tmp_path, calls):
    options = ["--mask", str(data / "labels.png"), "--obj", "2", "--tree", "sam2", "--max-frames", "1"]
    assert track(data, tmp_path, *options) == 0
    (_, prompts, _), = calls
    assert list(prompts) == [2]
    np.testing.assert_array_equal(prompts[2].mask, sample.masks[2][0])


def test_points_with_several_clicks_and_labels(data, tmp_path, calls):
    options = ["--points", "20,24; 5,6,0", "--points", "41.5,30,1", "--obj", "2", "--tree", "sam2",
               "--max-frames", "2"]
    assert track(data, tmp_path, *options) == 0
    (_, prompts, kwargs), = calls
    assert list(prompts) == [2]
    points = prompts[2]
    assert isinstance(points, samkit.Points) and points.frame == 0
    np.testing.assert_array_equal(points.xy, [[20, 24], [5, 6], [41.5, 30]])
    np.testing.assert_array_equal(points.labels, [1, 0, 1])
    assert kwargs == {"reverse": False, "max_frames": 2}
    assert png_names(tmp_path) == names(STEMS[:2])
    labels = read_labels(tmp_path, STEMS[:2])
    assert (labels == 2).any()  # object 2 is really there, not an all-background result
    expected = api_labels(data / "video", {2: points}, "sam2", max_frames=2)
    np.testing.assert_array_equal(labels, expected)


def test_box_on_a_later_frame_tracks_from_that_frame(data, tmp_path, calls):
    assert track(data, tmp_path, "--box", "10,12,40,44", "--frame", "2", "--tree", "sam2") == 0
    (_, prompts, _), = calls
    box = prompts[1]
    assert isinstance(box, samkit.Box) and box.frame == 2
    np.testing.assert_array_equal(box.xyxy, [10, 12, 40, 44])
    assert png_names(tmp_path) == names(STEMS[2:])


def test_reverse_tracks_towards_the_first_frame_for_at_most_max_frames(data, tmp_path, calls):
    options = ["--points", "30,20", "--frame", "3", "--reverse", "--max-frames", "3", "--tree", "sam2"]
    assert track(data, tmp_path, *options) == 0
    (_, _, kwargs), = calls
    assert kwargs == {"reverse": True, "max_frames": 3}
    assert png_names(tmp_path) == names(STEMS[1:4])  # frames 3, 2, 1


def test_per_object_and_coco_rle_outputs_hold_the_davis_masks(data, davis_run, tmp_path):
    labels = read_labels(davis_run)
    per_object = tmp_path / "per-object"
    common = ["--mask", str(data / "labels.png"), "--tree", "sam2"]
    assert track(data, per_object, *common, "--format", "per-object") == 0
    assert sorted(path.name for path in per_object.iterdir()) == ["001", "002"]
    for obj_id in (1, 2):
        folder = per_object / f"{obj_id:03d}"
        assert png_names(folder) == names(STEMS)
        np.testing.assert_array_equal(read_labels(folder), np.where(labels == obj_id, 255, 0))

    coco = tmp_path / "coco"
    assert track(data, coco, *common, "--format", "coco-rle") == 0
    document = json.loads((coco / "masks.json").read_text())
    assert document["video"]["frame_names"] == STEMS
    assert document["video"]["num_frames"] == NUM_FRAMES
    assert sorted((a["frame"], a["obj_id"]) for a in document["annotations"]) == [
        (frame, obj_id) for frame in range(NUM_FRAMES) for obj_id in (1, 2)
    ]
    for annotation in document["annotations"]:
        rle = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode())
        decoded = mask_utils.decode(rle).astype(bool)
        np.testing.assert_array_equal(decoded, labels[annotation["frame"]] == annotation["obj_id"])


def test_overlay_output_is_a_video_of_the_tracked_frames(data, tmp_path):
    options = ["--mask", str(data / "labels.png"), "--tree", "sam2", "--max-frames", "2",
               "--format", "overlay"]
    assert track(data, tmp_path, *options) == 0
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 2
    assert frames[0].shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("tree, extra, expected", [
    ("paper", [], TreeConfig.paper()),
    ("official", ["--pathways", "2"], TreeConfig.official().replace(num_pathways=2)),
])
def test_tree_presets_give_a_valid_run(data, tmp_path, calls, tree, extra, expected):
    options = ["--mask", str(data / "labels.png"), "--tree", tree, *extra, "--max-frames", "3"]
    assert track(data, tmp_path, *options) == 0
    (segmenter, prompts, _), = calls
    assert segmenter.tree == expected
    assert png_names(tmp_path) == names(STEMS[:3])
    labels = read_labels(tmp_path, STEMS[:3])
    assert set(np.unique(labels[0])) == {0, 1, 2}  # both objects on their prompt frame
    np.testing.assert_array_equal(labels, api_labels(data / "video", prompts, "sam2long", tree=expected,
                                                     max_frames=3))


@pytest.fixture(scope="module")
def bad_masks(data):
    small = data / "small.png"
    write_palette_png(small, np.ones((HEIGHT // 2, WIDTH), dtype=np.uint8))
    empty = data / "empty.png"
    write_palette_png(empty, np.zeros((HEIGHT, WIDTH), dtype=np.uint8))
    return {"small": small, "empty": empty}


@pytest.mark.parametrize("options, message", [
    (["--mask", "{data}/missing.png"], "--mask {data}/missing.png: no such file"),
    (["--mask", "{data}/small.png"], "is 64x24 (WxH) but the video is 64x48"),
    (["--mask", "{data}/empty.png"], "has no object pixels"),
    (["--mask", "{data}/labels.png", "--obj", "7"], "holds objects [1, 2], not 7"),
    (["--mask", "{data}/labels.png", "--frame", "5"], "--frame 5 is outside the video"),
    (["--points", "1,2,3,4"], "'1,2,3,4': expected numbers"),
    (["--points", "x,2"], "--points 'x,2': expected numbers"),
    (["--points", ";"], "--points is empty"),
    (["--points", "3,4,2"], "the label must be 1 (object) or 0 (background)"),
    (["--points", "3,nan"], "every number must be finite"),
    (["--points", "65,4"], "lies outside the 64x48 (WxH) frame"),
    (["--box", "1,2,3"], "expected four numbers"),
    (["--box", "30,30,10,10"], "x0 <= x1 and y0 <= y1"),
    (["--box", "0,0,10,49"], "lies outside the 64x48 (WxH) frame"),
])
def test_bad_input_exits_2_with_a_clear_message(data, bad_masks, tmp_path, capsys, calls, options, message):
    options = [option.format(data=data) for option in options]
    out = tmp_path / "out"
    assert track(data, out, *options) == 2
    err = capsys.readouterr().err
    assert err.startswith("samkit track: error: ")
    assert message.format(data=data) in err
    assert "Traceback" not in err
    assert not calls and not out.exists()


def test_missing_video_exits_2(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["track", str(missing), "--points", "1,1", "--out", str(tmp_path / "out"), *MODEL]) == 2
    assert f"video not found: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize("options, flag", [
    (["--points", "1,1", "--max-frames", "0"], "--max-frames"),
    (["--points", "1,1", "--frame", "-1"], "--frame"),
    (["--points", "1,1", "--obj", "0"], "--obj"),
    (["--points", "1,1", "--box", "0,0,1,1"], "not allowed with argument"),
    ([], "one of the arguments --mask --points --box is required"),
])
def test_bad_options_are_usage_errors(data, tmp_path, capsys, options, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(["track", str(data / "video"), "--out", str(tmp_path), *options])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_reverse_from_the_default_frame_0_is_an_error_not_an_empty_result(data, tmp_path, capsys, calls):
    out = tmp_path / "out"
    assert track(data, out, "--mask", str(data / "labels.png"), "--reverse") == 2
    err = capsys.readouterr().err
    assert "--reverse tracks from the prompt frame towards frame 0" in err and "--frame N" in err
    assert not calls and not out.exists()


def encode(frames, path, codec, options):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("name, codec, options", [
    ("clip.mkv", "libx264", {"crf": "12", "bf": "2"}),
    ("clip.webm", "libvpx", {"crf": "4", "b": "1M"}),
])
def test_mkv_and_webm_track_through_the_api_and_the_cli(sample, data, tmp_path, name, codec, options):
    path = encode(sample.frames, tmp_path / name, codec, options)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert container.streams.video[0].frames == 0  # no frame count in the container
    assert len(decoded) == NUM_FRAMES
    prompts = {obj_id: samkit.Mask(sample.masks[obj_id][0]) for obj_id in (1, 2)}
    from_file = api_labels(path, prompts, "sam2")
    assert len(from_file) == NUM_FRAMES and (from_file == 1).any() and (from_file == 2).any()
    np.testing.assert_array_equal(from_file, api_labels(decoded, prompts, "sam2"))  # the file's own frames

    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["track", str(path), "--mask", str(data / "labels.png"), "--tree", "sam2", "--out", str(out),
                     *MODEL]) == 0
    np.testing.assert_array_equal(read_labels(out, [f"{index:05d}" for index in range(NUM_FRAMES)]), from_file)
