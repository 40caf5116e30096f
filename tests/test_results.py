"""ImageResult / FrameResult / VideoResult: validation, conversions and streaming, atomic writers."""

import json
import os

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samkit import FrameResult, ImageResult, InputError, VideoResult
from samkit.io.masks import DAVIS_PALETTE, read_binary_png
from samkit.io.video import open_video

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

RNG = np.random.default_rng(3)
HEIGHT, WIDTH = 16, 24


def box_mask(top, left, bottom, right, height=HEIGHT, width=WIDTH):
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = True
    return mask


def two_object_result(**kwargs):
    masks = np.stack([box_mask(0, 0, 4, 6), box_mask(8, 10, 16, 24)])
    return ImageResult(masks=masks, scores=np.array([0.9, 0.7]), **kwargs)


# ---------------------------------------------------------------- ImageResult


def test_image_result_defaults_and_types():
    result = two_object_result()
    assert len(result) == 2 and (result.height, result.width) == (HEIGHT, WIDTH)
    assert result.obj_ids == [1, 2]
    assert result.scores.dtype == np.float32 and result.masks.dtype == np.bool_


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"masks": np.zeros((2, 3, 4, 5), bool), "scores": [0.1, 0.2]}, r"\(N, H, W\)"),
        ({"masks": np.zeros((2, 3, 4), bool), "scores": [0.1]}, r"\(2,\)"),
        ({"masks": np.zeros((1, 3, 4), np.float32) + 0.5, "scores": [0.1]}, "bool"),
        ({"masks": np.zeros((1, 3, 4), bool), "scores": [np.nan]}, "finite"),
        (
            {"masks": np.zeros((2, 3, 4), bool), "scores": [0.1, 0.2], "logits": np.zeros((3, 4, 4))},
            "leading",
        ),
        ({"masks": np.zeros((2, 3, 4), bool), "scores": [0.1, 0.2], "obj_ids": [1, 1]}, "distinct"),
        ({"masks": np.zeros((1, 3, 4), bool), "scores": [0.1], "obj_ids": [0]}, "positive"),
    ],
)
def test_image_result_validation(kwargs, message):
    with pytest.raises(InputError, match=message):
        ImageResult(**kwargs)


def test_image_result_label_map_and_overlap_by_score():
    result = two_object_result(obj_ids=[5, 3])
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[0:4, 0:6] = 5
    expected[8:16, 10:24] = 3
    assert np.array_equal(result.to_label_map(), expected)
    overlapping = ImageResult(
        masks=np.stack([box_mask(0, 0, 4, 4), box_mask(2, 2, 6, 6)]), scores=[0.2, 0.8], obj_ids=[2, 1]
    )
    label_map = overlapping.to_label_map()
    assert label_map[3, 3] == 1  # object 1 scored higher
    assert label_map[0, 0] == 2 and label_map[5, 5] == 1


def test_image_result_save_png_is_davis_palette(tmp_path):
    result = two_object_result(obj_ids=[4, 9])
    result.save(tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as image:
        assert image.mode == "P" and bytes(image.getpalette()) == DAVIS_PALETTE
        values = np.array(image)
    assert np.array_equal(values == 4, result.masks[0]) and np.array_equal(values == 9, result.masks[1])
    assert set(np.unique(values).tolist()) == {0, 4, 9}


def test_image_result_save_json_decodes_with_pycocotools(tmp_path):
    result = two_object_result()
    result.save(tmp_path / "out.json")
    document = json.loads((tmp_path / "out.json").read_text())
    assert (document["height"], document["width"]) == (HEIGHT, WIDTH)
    assert [annotation["obj_id"] for annotation in document["annotations"]] == [1, 2]
    assert [annotation["score"] for annotation in document["annotations"]] == pytest.approx([0.9, 0.7])
    for annotation, mask in zip(document["annotations"], result.masks):
        rle = annotation["segmentation"]
        decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), mask)
    assert [rle["counts"] for rle in result.to_rle()] == [
        a["segmentation"]["counts"] for a in document["annotations"]
    ]


def test_image_result_save_npz_round_trip(tmp_path):
    logits = RNG.standard_normal((2, 4, 4)).astype(np.float32)
    result = two_object_result(logits=logits, obj_ids=[7, 8])
    result.save(tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as data:
        assert np.array_equal(data["masks"], result.masks)
        assert np.array_equal(data["scores"], result.scores)
        assert data["obj_ids"].tolist() == [7, 8]
        assert np.array_equal(data["logits"], logits)
    assert os.listdir(tmp_path) == ["out.npz"]


def test_image_result_save_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"\.png, \.json, \.npz"):
        two_object_result().save(tmp_path / "out.bmp")
    assert os.listdir(tmp_path) == []


def test_image_result_overlay_uses_obj_id_colours():
    image = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    out = two_object_result(obj_ids=[2, 1]).overlay(image, alpha=0.5)
    assert out[0, 0].tolist() == [50, 114, 50]  # object 2 is (0, 128, 0)
    assert out[10, 12].tolist() == [114, 50, 50]  # object 1 is (128, 0, 0)
    assert out[6, 8].tolist() == [100, 100, 100]


def test_empty_image_result():
    result = ImageResult(masks=np.zeros((0, 4, 5), bool), scores=np.zeros(0))
    assert len(result) == 0 and result.to_rle() == []
    assert np.array_equal(result.to_label_map(), np.zeros((4, 5), np.uint8))


# ---------------------------------------------------------------- FrameResult


def test_frame_result_validation():
    mask = box_mask(0, 0, 2, 2)
    with pytest.raises(InputError, match="frame_idx"):
        FrameResult(-1, {1: mask}, {1: 0.5})
    with pytest.raises(InputError, match="positive"):
        FrameResult(0, {0: mask}, {0: 0.5})
    with pytest.raises(InputError, match="object 2"):
        FrameResult(0, {1: mask, 2: np.zeros((3, 3), bool)}, {})
    with pytest.raises(InputError, match=r"\[3\]"):
        FrameResult(0, {1: mask}, {3: 0.5})
    frame = FrameResult(np.int64(4), {np.int32(2): mask.astype(np.uint8)}, {2: np.float32(0.25)})
    assert frame.frame_idx == 4 and frame.obj_ids == [2]
    assert frame.masks[2].dtype == np.bool_ and frame.scores == {2: 0.25}


def test_frame_result_label_map():
    frame = FrameResult(0, {1: box_mask(0, 0, 4, 4), 2: box_mask(2, 2, 6, 6)}, {1: 0.9, 2: 0.1})
    assert frame.label_map()[3, 3] == 1
    assert FrameResult(0, {1: box_mask(0, 0, 4, 4), 2: box_mask(2, 2, 6, 6)}, {}).label_map()[3, 3] == 2
    with pytest.raises(InputError, match="shape"):
        FrameResult(3, {}, {}).label_map()
    assert np.array_equal(FrameResult(3, {}, {}).label_map((2, 3)), np.zeros((2, 3), np.uint8))


# ---------------------------------------------------------------- VideoResult


def moving_box_frames(count, produced=None):
    """Two objects; object 1 moves right one pixel per frame, object 2 appears from frame 2."""
    for index in range(count):
        if produced is not None:
            produced.append(index)
        masks = {1: box_mask(2, index, 6, index + 4)}
        scores = {1: 0.5 + index / 100}
        if index >= 2:
            masks[2] = box_mask(10, 12, 14, 20)
            scores[2] = 0.8
        yield FrameResult(index, masks, scores)


def test_video_result_streams_once_unless_collected():
    result = VideoResult(moving_box_frames(3), height=HEIGHT, width=WIDTH)
    assert [frame.frame_idx for frame in result] == [0, 1, 2]
    with pytest.raises(InputError, match="collect"):
        iter(result)
    collected = VideoResult(moving_box_frames(3))
    frames = collected.collect()
    assert [frame.frame_idx for frame in frames] == [0, 1, 2]
    assert [frame.frame_idx for frame in collected] == [0, 1, 2]
    assert collected.collect() is frames
    assert (collected.height, collected.width) == (HEIGHT, WIDTH)  # learned from the masks


def test_video_result_is_lazy():
    produced = []
    result = VideoResult(moving_box_frames(5, produced))
    assert produced == []
    iterator = iter(result)
    next(iterator)
    assert produced == [0]


def test_video_result_rejects_wrong_shapes_and_items():
    frames = [FrameResult(0, {1: box_mask(0, 0, 2, 2)}, {}), FrameResult(1, {1: np.ones((3, 3), bool)}, {})]
    with pytest.raises(InputError, match="frame 1"):
        list(VideoResult(frames))
    with pytest.raises(InputError, match="FrameResult"):
        list(VideoResult([{"frame": 0}]))


def test_save_davis_streams_with_source_frame_names(tmp_path, monkeypatch):
    from samkit.results import writers as results_module

    produced, written = [], []
    original = results_module.write_palette_png

    def recording_writer(path, label_map):
        written.append((path.name, len(produced)))
        return original(path, label_map)

    monkeypatch.setattr(results_module, "write_palette_png", recording_writer)
    names = [f"frame_{index * 5}" for index in range(4)]
    result = VideoResult(moving_box_frames(4, produced), height=HEIGHT, width=WIDTH, frame_names=names)
    assert result.save(tmp_path / "davis") == tmp_path / "davis"
    # each frame is written as soon as it is produced: nothing is buffered
    assert written == [(f"{name}.png", index + 1) for index, name in enumerate(names)]
    assert sorted(os.listdir(tmp_path / "davis")) == sorted(f"{name}.png" for name in names)
    for index, name in enumerate(names):
        with Image.open(tmp_path / "davis" / f"{name}.png") as image:
            assert image.mode == "P" and bytes(image.getpalette()) == DAVIS_PALETTE
            values = np.array(image)
        expected = np.zeros((HEIGHT, WIDTH), np.uint8)
        expected[2:6, index : index + 4] = 1
        if index >= 2:
            expected[10:14, 12:20] = 2
        assert np.array_equal(values, expected), name


def test_save_davis_default_names_and_empty_frames(tmp_path):
    frames = [FrameResult(0, {}, {}), FrameResult(1, {3: box_mask(0, 0, 1, 1)}, {3: 1.0})]
    VideoResult(frames, height=HEIGHT, width=WIDTH).save(tmp_path, format="davis")
    assert sorted(os.listdir(tmp_path)) == ["00000.png", "00001.png"]
    with Image.open(tmp_path / "00000.png") as image:
        assert np.array(image).max() == 0 and image.size == (WIDTH, HEIGHT)


def test_save_per_object_sav_layout(tmp_path):
    VideoResult(moving_box_frames(3)).save(tmp_path, format="per-object")
    assert sorted(os.listdir(tmp_path)) == ["001", "002"]
    assert sorted(os.listdir(tmp_path / "001")) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(os.listdir(tmp_path / "002")) == ["00002.png"]
    with Image.open(tmp_path / "001" / "00001.png") as image:
        assert image.mode == "L"
        values = np.array(image)
    assert set(np.unique(values).tolist()) == {0, 255}
    assert np.array_equal(values == 255, box_mask(2, 1, 6, 5))


def test_save_per_object_with_object_names(tmp_path):
    VideoResult(moving_box_frames(3), object_names={1: "000"}).save(tmp_path / "a", format="per-object")
    assert sorted(os.listdir(tmp_path / "a")) == ["000", "002"]
    VideoResult(moving_box_frames(3)).save(tmp_path / "b", format="per-object", object_names={2: "car"})
    assert sorted(os.listdir(tmp_path / "b")) == ["001", "car"]
    assert read_binary_png(tmp_path / "b" / "car" / "00002.png").tolist() == box_mask(10, 12, 14, 20).tolist()


def test_save_coco_rle_schema_and_decoding(tmp_path):
    result = VideoResult(moving_box_frames(3), fps=24.0)
    result.save(tmp_path, format="coco-rle")
    document = json.loads((tmp_path / "masks.json").read_text())
    assert document["video"] == {
        "height": HEIGHT,
        "width": WIDTH,
        "num_frames": 3,
        "fps": 24.0,
        "frame_names": None,
    }
    keys = [(annotation["frame"], annotation["obj_id"]) for annotation in document["annotations"]]
    assert keys == [(0, 1), (1, 1), (2, 1), (2, 2)]
    for annotation in document["annotations"]:
        rle = annotation["segmentation"]
        mask = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        frame = annotation["frame"]
        expected = box_mask(2, frame, 6, frame + 4) if annotation["obj_id"] == 1 else box_mask(10, 12, 14, 20)
        assert np.array_equal(mask, expected)
        assert annotation["score"] == pytest.approx(0.5 + frame / 100 if annotation["obj_id"] == 1 else 0.8)


def test_save_failure_mid_stream_leaves_no_partial_json(tmp_path):
    def failing_frames():
        yield from moving_box_frames(2)
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        VideoResult(failing_frames()).save(tmp_path, format="coco-rle")
    assert os.listdir(tmp_path) == []


def test_save_unknown_format_consumes_nothing(tmp_path):
    produced = []
    result = VideoResult(moving_box_frames(2, produced))
    with pytest.raises(InputError, match="davis, per-object, coco-rle, overlay"):
        result.save(tmp_path, format="sav")
    assert produced == []
    assert len(result.collect()) == 2


def make_frame_folder(directory, count):
    directory.mkdir()
    for index in range(count):
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 90, np.uint8)).save(directory / f"{index:05d}.png")
    return directory


def test_save_overlay_mp4(tmp_path):
    video = open_video(make_frame_folder(tmp_path / "frames", 4))
    frames = [FrameResult(index, {1: box_mask(0, 0, HEIGHT, WIDTH // 2)}, {1: 1.0}) for index in range(4)]
    out = VideoResult(frames, video=video).save(tmp_path / "out", format="overlay", fps=8)
    assert os.listdir(out) == ["overlay.mp4"]
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(8.0)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 4
    for frame in decoded:
        assert frame.shape == (HEIGHT, WIDTH, 3)
        # inside the mask (away from the edge): 0.5 * 90 + 0.5 * (128, 0, 0) = (109, 45, 45)
        inside = frame[2:-2, 2 : WIDTH // 2 - 4].reshape(-1, 3).mean(axis=0)
        outside = frame[2:-2, WIDTH // 2 + 4 : -2].reshape(-1, 3).mean(axis=0)
        assert np.abs(inside - [109, 45, 45]).max() < 8
        assert np.abs(outside - [90, 90, 90]).max() < 8


def test_save_overlay_needs_rereadable_video(tmp_path):
    frames = [FrameResult(0, {1: box_mask(0, 0, 2, 2)}, {})]
    with pytest.raises(InputError, match="video"):
        VideoResult(frames).save(tmp_path, format="overlay")
    generator_video = open_video(np.full((HEIGHT, WIDTH, 3), 9, np.uint8) for _ in range(1))
    with pytest.raises(InputError, match="one-shot"):
        VideoResult(frames, video=generator_video).save(tmp_path, format="overlay")
    folder = make_frame_folder(tmp_path / "frames", 1)
    VideoResult(frames).save(tmp_path / "ok", format="overlay", video=folder)
    assert os.listdir(tmp_path / "ok") == ["overlay.mp4"]
