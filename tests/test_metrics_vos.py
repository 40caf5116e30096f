"""VOS J / F / J&F against hand-computed fixtures (DAVIS 2017 and SA-V evaluator definitions)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samkit.errors import InputError
from samkit.metrics.boundary import (
    boundary_f_measure,
    boundary_radius,
    disk,
    match_boundaries,
    seg2bmap,
)
from samkit.metrics.vos import evaluate, region_jaccard

SIDE = 20  # 20x20 frames: diagonal 28.3 px, so the DAVIS tolerance is ceil(0.008 * 28.3) = 1 px


def square(top: int, left: int, size: int = 10, shape: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


# Fixture used throughout: A = 10x10 square at rows 5..14, cols 5..14; B = A shifted right by 2.
# J: |A ∩ B| = 10 rows x 8 cols = 80, |A ∪ B| = 100 + 100 - 80 = 120 -> J = 2/3.
# F (radius 1, the disk is the 5-pixel cross): seg2bmap of A is the outline of rows 4..14 x cols 4..14
# (40 px), of B the outline of rows 4..14 x cols 6..16 (40 px). A B-outline pixel is matched when an
# A-outline pixel is in its cross: top row cols 6..15 (10), bottom row cols 6..15 (10), left column
# rows 5 and 13 (2, via A's top / bottom rows); left rows 6..12 and the right column are not.
# P = 22/40; by symmetry R = 22/40, so F = 0.55.
SHIFTED_J = 2 / 3
SHIFTED_F = 0.55
A = square(5, 5)
B = square(5, 7)


PALETTE = [channel for index in range(256) for channel in (index, (97 * index) % 256, 255 - index)]


def write_labels(path, labels: np.ndarray) -> None:
    """A palette (mode P) PNG whose pixel indices are the object ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(PALETTE)
    image.save(path)


def write_binary(path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def brute_force_near(targets: np.ndarray, sources: np.ndarray, radius: int) -> int:
    """Reference: dilate ``sources`` by shifting it over every disk offset (zero border), count hits."""
    height, width = sources.shape
    dilated = np.zeros_like(sources)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            shifted = np.zeros_like(sources)
            shifted[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = sources[
                max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
            ]
            dilated |= shifted
    return int(np.count_nonzero(targets & dilated))


# ----------------------------------------------------------------------------- boundary primitives


def test_seg2bmap_marks_the_outline_shifted_towards_the_origin():
    seg = np.zeros((5, 6), dtype=bool)
    seg[1:3, 2:4] = True
    # a pixel is a boundary pixel when it differs from its east, south or south-east neighbour
    expected = np.array(
        [
            [0, 1, 1, 1, 0, 0],
            [0, 1, 0, 1, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_seg2bmap_last_row_and_column_rules():
    # object in the last column: the last column compares only with its south neighbour (equal ->
    # no boundary), the bottom-right pixel is never a boundary; column 1 differs from its east one.
    seg = np.zeros((3, 3), dtype=bool)
    seg[:, 2] = True
    expected = np.zeros((3, 3), dtype=bool)
    expected[:, 1] = True
    np.testing.assert_array_equal(seg2bmap(seg), expected)
    # a mask covering the whole frame has no boundary pixel at all
    assert not seg2bmap(np.ones((4, 5), dtype=bool)).any()


def test_seg2bmap_of_square_is_its_outline_moved_up_left():
    outline = np.zeros((SIDE, SIDE), dtype=bool)
    outline[4:15, 4:15] = True
    outline[5:14, 5:14] = False
    np.testing.assert_array_equal(seg2bmap(A), outline)
    assert seg2bmap(A).sum() == 40


def test_boundary_radius_is_ceil_of_0008_diagonal():
    assert boundary_radius((480, 854)) == 8  # 0.008 * 979.65 = 7.84
    assert boundary_radius((600, 800)) == 8  # 0.008 * 1000 = 8 exactly
    assert boundary_radius((1080, 1920)) == 18  # 0.008 * 2202.9 = 17.6
    assert boundary_radius((SIDE, SIDE)) == 1
    assert boundary_radius((100, 100)) == 2  # 0.008 * 141.4 = 1.13


def test_disk_matches_skimage_definition():
    expected = np.array(
        [
            [0, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(disk(2), expected)
    assert disk(3).sum() == 29  # row lengths 1, 5, 5, 7, 5, 5, 1 (half-widths isqrt(9 - dy^2))
    np.testing.assert_array_equal(disk(0), np.ones((1, 1), dtype=bool))


@pytest.mark.parametrize("radius", [1, 2, 3, 8])
def test_match_boundaries_equals_dilation_by_the_disk(radius):
    rng = np.random.default_rng(radius)
    for _ in range(5):
        pred = rng.random((37, 29)) < 0.04
        gt = rng.random((37, 29)) < 0.04
        assert match_boundaries(pred, gt, radius) == (
            brute_force_near(pred, gt, radius),
            brute_force_near(gt, pred, radius),
        )


# ----------------------------------------------------------------------------- per-frame J and F


def test_jaccard_of_shifted_square():
    assert region_jaccard(B, A) == pytest.approx(SHIFTED_J)
    assert region_jaccard(A, A) == 1.0


def test_boundary_f_of_shifted_square_radius_1():
    assert boundary_f_measure(B, A) == pytest.approx(SHIFTED_F)
    assert boundary_f_measure(A, B) == pytest.approx(SHIFTED_F)


def test_boundary_f_radius_2_uses_the_whole_disk():
    # 100x100 frame -> radius 2. A2 = rows/cols 10..19, outline rows/cols 9..19. Shifted by 2 columns
    # every outline pixel has its counterpart 2 px away: F = 1. Shifted by 3 (outline cols 12..22):
    # top / bottom rows match cols 12..21 (10 each; col 21 is 2 px from A2's corner), the left
    # column matches rows 10, 11, 17, 18 (within 2 of A2's top / bottom rows), the right column
    # (3 px from A2's) matches nothing: P = 24/40, and R = 24/40 by symmetry -> F = 0.6.
    shape = (100, 100)
    a2 = square(10, 10, shape=shape)
    assert boundary_f_measure(square(10, 12, shape=shape), a2) == pytest.approx(1.0)
    assert boundary_f_measure(square(10, 13, shape=shape), a2) == pytest.approx(0.6)
    # with radius 1 the 2-px shift is no longer fully matched
    assert boundary_f_measure(square(10, 12, shape=shape), a2, radius=1) < 1.0


def test_empty_and_full_mask_edge_cases_follow_davis():
    empty = np.zeros((SIDE, SIDE), dtype=bool)
    assert region_jaccard(empty, empty) == 1.0
    assert boundary_f_measure(empty, empty) == 1.0  # no boundary anywhere: P = R = 1
    assert region_jaccard(empty, A) == 0.0
    assert boundary_f_measure(empty, A) == 0.0  # P = 1, R = 0
    assert boundary_f_measure(A, empty) == 0.0  # P = 0, R = 1
    # a full-frame mask has no seg2bmap boundary, so against an empty one F = 1 while J = 0
    full = np.ones((SIDE, SIDE), dtype=bool)
    assert region_jaccard(full, empty) == 0.0
    assert boundary_f_measure(full, empty) == 1.0


# ----------------------------------------------------------------------------- whole-benchmark evaluation

EMPTY = np.zeros((SIDE, SIDE), dtype=bool)


def bar_masks() -> tuple[np.ndarray, np.ndarray]:
    bar = np.zeros((SIDE, SIDE), dtype=bool)
    bar[16:19, 2:18] = True  # rows 16..18, cols 2..17: 48 px
    bar_part = np.zeros((SIDE, SIDE), dtype=bool)
    bar_part[16:19, 4:18] = True  # cols 4..17: 42 px
    return bar, bar_part


def toy_video() -> tuple[list[dict[int, np.ndarray]], list[dict[int, np.ndarray]]]:
    """Five frames, two objects, as per-frame {obj_id: mask} for GT and prediction.

    Object 1: GT = A on every frame; prediction empty on frames 0 and 4, B on frames 1..3.
    Object 2, a bar below A (rows 16..18, cols 2..17, 48 px): in the GT on frames 0 and 2..4, absent
    on frame 1; predicted absent on frames 0..1 and as its right 42 px (cols 4..17) on frames 2..4.
    """
    bar, bar_part = bar_masks()
    gt, pred = [], []
    for t in range(5):
        gt.append({1: A, 2: bar if t != 1 else EMPTY})
        pred.append({1: B if 1 <= t <= 3 else EMPTY, 2: bar_part if t >= 2 else EMPTY})
    return gt, pred


BAR_J = 42 / 48  # the predicted part lies inside the GT bar: I = 42, U = 48


def bar_f() -> float:
    """F of the bar prediction, from the per-frame function tested against hand counts above."""
    bar, bar_part = bar_masks()
    return boundary_f_measure(bar_part, bar)


def write_davis(root, video: str, frames: list[dict[int, np.ndarray]]) -> None:
    for t, masks in enumerate(frames):
        labels = np.zeros((SIDE, SIDE), dtype=np.uint8)
        for obj_id, mask in sorted(masks.items()):
            labels[mask] = obj_id
        write_labels(root / video / f"{t:05d}.png", labels)


def write_sav(root, video: str, frames: list[dict[int, np.ndarray]]) -> None:
    for t, masks in enumerate(frames):
        for obj_id, mask in masks.items():
            write_binary(root / video / f"{obj_id:03d}" / f"{t:05d}.png", mask)


@pytest.fixture
def davis_toy(tmp_path):
    gt, pred = toy_video()
    write_davis(tmp_path / "gt", "toy", gt)
    write_davis(tmp_path / "pred", "toy", pred)
    return tmp_path / "gt", tmp_path / "pred"


def test_first_and_last_frames_are_skipped_by_default(davis_toy):
    gt_root, pred_root = davis_toy
    result = evaluate(gt_root, pred_root, layout="davis")
    obj1 = result.per_object["toy/001"]
    # frames 1..3 only: B against A each time
    assert obj1.num_frames == 3
    assert obj1.J == pytest.approx(SHIFTED_J)
    assert obj1.F == pytest.approx(SHIFTED_F)
    kept = evaluate(gt_root, pred_root, layout="davis", skip_first_last=False).per_object["toy/001"]
    # frames 0 and 4 add an empty prediction against A: J = F = 0 there
    assert kept.num_frames == 5
    assert kept.J == pytest.approx(3 * SHIFTED_J / 5)
    assert kept.F == pytest.approx(3 * SHIFTED_F / 5)


def test_sav_protocol_counts_an_object_from_its_first_appearance(davis_toy):
    gt_root, pred_root = davis_toy
    result = evaluate(gt_root, pred_root, layout="davis", protocol="sav")
    obj2 = result.per_object["toy/002"]
    # evaluated frames 1..3; on frame 1 object 2 is in neither GT nor prediction, so it starts on 2
    assert obj2.num_frames == 2
    assert obj2.J == pytest.approx(BAR_J)
    assert obj2.F == pytest.approx(bar_f())
    # overall = mean over the two objects; J&F = (J + F) / 2
    assert result.J == pytest.approx((SHIFTED_J + BAR_J) / 2)
    assert result.F == pytest.approx((SHIFTED_F + bar_f()) / 2)
    assert result["J&F"] == pytest.approx((result.J + result.F) / 2)


def test_davis_protocol_scores_first_frame_objects_on_every_frame(davis_toy):
    gt_root, pred_root = davis_toy
    result = evaluate(gt_root, pred_root, layout="davis", protocol="davis")
    obj2 = result.per_object["toy/002"]
    # frame 1 (empty GT and prediction) counts J = F = 1
    assert obj2.num_frames == 3
    assert obj2.J == pytest.approx((1 + 2 * BAR_J) / 3)
    assert obj2.F == pytest.approx((1 + 2 * bar_f()) / 3)


def test_davis_and_sav_layouts_give_the_same_numbers(tmp_path, davis_toy):
    gt_root, pred_root = davis_toy
    gt, pred = toy_video()
    write_sav(tmp_path / "sav_gt", "toy", gt)
    write_sav(tmp_path / "sav_pred", "toy", pred)
    for protocol in ("sav", "davis"):
        for skip in (True, False):
            davis = evaluate(gt_root, pred_root, layout="davis", protocol=protocol, skip_first_last=skip)
            sav = evaluate(
                tmp_path / "sav_gt",
                tmp_path / "sav_pred",
                layout="sav",
                protocol=protocol,
                skip_first_last=skip,
            )
            assert set(davis.per_object) == set(sav.per_object) == {"toy/001", "toy/002"}
            for key in davis.per_object:
                assert sav.per_object[key].J == pytest.approx(davis.per_object[key].J)
                assert sav.per_object[key].F == pytest.approx(davis.per_object[key].F)
                assert sav.per_object[key].num_frames == davis.per_object[key].num_frames
            assert sav.JF == pytest.approx(davis.JF)


def test_ground_truth_void_255_is_background(tmp_path):
    # GT: object 1 = A, plus a void (255) band on row 0; the prediction labels A and that band as 1.
    # Void counts as background (DAVIS 2017 semi-supervised), so the band's 20 px are false positives:
    # J = 100 / 120, and no object 255 is reported.
    gt_labels = A.astype(np.uint8)
    gt_labels[0, :] = 255
    pred_labels = A.astype(np.uint8)
    pred_labels[0, :] = 1
    for t in range(3):
        write_labels(tmp_path / "gt" / "v" / f"{t:05d}.png", gt_labels)
        write_labels(tmp_path / "pred" / "v" / f"{t:05d}.png", pred_labels)
    result = evaluate(tmp_path / "gt", tmp_path / "pred", layout="davis")
    assert list(result.per_object) == ["v/001"]
    assert result.J == pytest.approx(100 / 120)


def test_missing_prediction_counts_as_empty_and_strict_raises(davis_toy):
    gt_root, pred_root = davis_toy
    (pred_root / "toy" / "00002.png").unlink()
    result = evaluate(gt_root, pred_root, layout="davis")
    # object 1 on frame 2 is now an empty prediction against A: J = F = 0 there
    assert result.per_object["toy/001"].J == pytest.approx(2 * SHIFTED_J / 3)
    assert result.missing_predictions == (str(pred_root / "toy" / "00002.png"),)
    with pytest.raises(InputError, match="00002.png"):
        evaluate(gt_root, pred_root, layout="davis", strict=True)


def test_missing_prediction_video_is_an_error_unless_excluded(tmp_path, davis_toy):
    gt_root, pred_root = davis_toy
    gt, _ = toy_video()
    write_davis(gt_root, "other", gt)
    with pytest.raises(InputError, match="other"):
        evaluate(gt_root, pred_root)
    subset = evaluate(gt_root, pred_root, videos=["toy"])
    assert set(subset.per_object) == {"toy/001", "toy/002"}
    with pytest.raises(InputError, match="nope"):
        evaluate(gt_root, pred_root, videos=["nope"])


def test_frames_without_ground_truth_are_not_scored(davis_toy):
    gt_root, pred_root = davis_toy
    # a prediction for an unannotated frame (SA-V predicts at 24 fps, annotates at 6 fps) is ignored
    write_labels(pred_root / "toy" / "00001_5.png", np.full((SIDE, SIDE), 2, dtype=np.uint8))
    before = evaluate(gt_root, pred_root)
    assert before.per_object["toy/001"].num_frames == 3
    assert before.per_object["toy/001"].J == pytest.approx(SHIFTED_J)


def test_workers_give_the_same_result(tmp_path):
    gt, pred = toy_video()
    for index in range(3):
        shifted_pred = [{k: np.roll(m, index, axis=0) for k, m in frame.items()} for frame in pred]
        write_davis(tmp_path / "gt", f"v{index}", gt)
        write_davis(tmp_path / "pred", f"v{index}", shifted_pred)
    serial = evaluate(tmp_path / "gt", tmp_path / "pred", workers=1)
    parallel = evaluate(tmp_path / "gt", tmp_path / "pred", workers=2)
    assert serial.to_dict() == parallel.to_dict()
    assert len(serial.per_object) == 6
    assert len({score.J for score in serial.per_object.values()}) > 1  # the videos really differ


def test_layout_is_detected_and_checked(tmp_path, davis_toy):
    gt_root, pred_root = davis_toy
    assert evaluate(gt_root, pred_root).to_dict() == evaluate(gt_root, pred_root, layout="davis").to_dict()
    with pytest.raises(InputError, match="layout='davis'"):
        evaluate(gt_root, pred_root, layout="sav")
    with pytest.raises(InputError, match="layout"):
        evaluate(gt_root, pred_root, layout="youtube")


def test_bad_inputs_raise_input_error(tmp_path, davis_toy):
    gt_root, pred_root = davis_toy
    write_labels(pred_root / "toy" / "00002.png", np.zeros((SIDE, SIDE + 1), dtype=np.uint8))
    with pytest.raises(InputError, match="ground-truth resolution"):
        evaluate(gt_root, pred_root)
    with pytest.raises(InputError, match="not a folder"):
        evaluate(tmp_path / "absent", pred_root)
    with pytest.raises(InputError, match="workers"):
        evaluate(gt_root, pred_root, workers=0)
    with pytest.raises(InputError, match="protocol"):
        evaluate(gt_root, pred_root, protocol="mose")


def test_sav_layout_rejects_multi_object_pngs(tmp_path):
    gt, pred = toy_video()
    write_sav(tmp_path / "gt", "v", gt)
    write_sav(tmp_path / "pred", "v", pred)
    labels = np.zeros((SIDE, SIDE), dtype=np.uint8)
    labels[A] = 1
    labels[B & ~A] = 2
    write_labels(tmp_path / "pred" / "v" / "001" / "00002.png", labels)
    with pytest.raises(InputError, match="one binary object mask"):
        evaluate(tmp_path / "gt", tmp_path / "pred", layout="sav")


def test_sav_object_absent_from_evaluated_ground_truth_is_unscored(tmp_path):
    # object 000 is only in the first (skipped) annotated frame; the SA-V evaluator cannot report it
    gt = [{0: A if t == 0 else EMPTY, 1: A} for t in range(4)]
    write_sav(tmp_path / "gt", "v", gt)
    write_sav(tmp_path / "pred", "v", gt)
    result = evaluate(tmp_path / "gt", tmp_path / "pred", layout="sav")
    assert list(result.per_object) == ["v/001"]
    assert result.unscored == ("v/000",)
    assert result.J == 1.0 and result.F == 1.0
    # the DAVIS rule scores every object folder on every evaluated frame (empty vs empty = 1)
    davis_rule = evaluate(tmp_path / "gt", tmp_path / "pred", layout="sav", protocol="davis")
    assert set(davis_rule.per_object) == {"v/000", "v/001"}
