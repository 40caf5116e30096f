"""The DAVIS boundary F-measure, written fresh from its published definition.

Reference behaviour (both evaluators share it): ``davis2017-evaluation`` ``davis2017/metrics.py``
(``f_measure``, ``_seg2bmap``) and SA-V ``sav_dataset/utils/sav_benchmark.py`` (``Evaluator.feed_frame``,
``_seg2bmap``):

* boundaries are the 1-pixel maps of :func:`seg2bmap` (offset half a pixel towards the origin);
* a boundary pixel is matched when the other mask's boundary lies within a disk of radius
  ``ceil(0.008 * ||(H, W)||)`` pixels (``skimage.morphology.disk`` dilated with ``cv2.dilate``, whose
  border adds no foreground); precision and recall are the matched fractions, ``F = 2PR / (P + R)``;
* edge cases: no boundary in either mask -> P = R = 1; only the prediction has one -> P = 0, R = 1;
  only the ground truth has one -> P = 1, R = 0; ``F = 0`` when ``P + R = 0``.

The disk matching is computed here with numpy (the disk as a stack of horizontal runs, looked up in
row prefix sums at the boundary pixels only), which gives the same matches as the dilation without
skimage or OpenCV.
"""

from __future__ import annotations

import math

import numpy as np

BOUNDARY_FRACTION = 0.008
"""DAVIS ``bound_th``: the match tolerance as a fraction of the image diagonal."""


def boundary_radius(shape: tuple[int, int], fraction: float = BOUNDARY_FRACTION) -> int:
    """Match tolerance in pixels for an (H, W) frame: ``ceil(fraction * ||(H, W)||)``, as DAVIS computes it."""
    return int(np.ceil(fraction * np.linalg.norm(shape)))


def disk(radius: int) -> np.ndarray:
    """Bool (2r+1, 2r+1) disk: offsets (dy, dx) with ``dy**2 + dx**2 <= r**2`` (``skimage.morphology.disk``)."""
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """Bool (H, W) boundary map of a bool (H, W) mask, pixel-for-pixel the DAVIS ``_seg2bmap``.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour
    (neighbours outside the image count as background). The last row compares only with the east
    neighbour, the last column only with the south neighbour, and the bottom-right pixel is never a
    boundary pixel.
    """
    seg = np.asarray(mask, dtype=bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _near(targets: np.ndarray, sources: np.ndarray, radius: int) -> int:
    """How many set pixels of ``targets`` have a set pixel of ``sources`` within :func:`disk` ``(radius)``.

    Equals ``count_nonzero(targets & dilate(sources, disk(radius)))`` with a zero border (as
    ``cv2.dilate`` does), computed from row prefix sums: the disk is a stack of horizontal runs.
    """
    height, width = sources.shape
    # source_counts[y, x] = number of source pixels in sources[y, :x]
    source_counts = np.zeros((height, width + 1), dtype=np.int32)
    np.cumsum(sources, axis=1, out=source_counts[:, 1:])
    target_y, target_x = np.nonzero(targets)
    matched = np.zeros(target_y.shape, dtype=bool)
    for dy in range(-radius, radius + 1):
        half_width = math.isqrt(radius * radius - dy * dy)  # the disk's run at offset dy spans [-hw, hw]
        rows = target_y + dy
        inside = (rows >= 0) & (rows < height)
        rows, cols = rows[inside], target_x[inside]
        left = np.clip(cols - half_width, 0, width)
        right = np.clip(cols + half_width + 1, 0, width)
        matched[inside] |= source_counts[rows, right] > source_counts[rows, left]
    return int(np.count_nonzero(matched))


def match_boundaries(pred_boundary: np.ndarray, gt_boundary: np.ndarray, radius: int) -> tuple[int, int]:
    """(prediction boundary pixels within ``radius`` of the GT boundary, GT boundary pixels within
    ``radius`` of the prediction boundary), distance measured with the DAVIS disk."""
    union = pred_boundary | gt_boundary
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return 0, 0
    # Every boundary pixel (both ends of a match) lies in this box, so matching inside it is exact.
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    pred_box, gt_box = pred_boundary[box], gt_boundary[box]
    return _near(pred_box, gt_box, radius), _near(gt_box, pred_box, radius)


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, radius: int | None = None) -> float:
    """DAVIS boundary F-measure of a bool (H, W) prediction against a bool (H, W) ground truth.

    ``radius`` defaults to :func:`boundary_radius` of the frame shape.
    """
    if radius is None:
        radius = boundary_radius(gt.shape)
    pred_boundary = seg2bmap(pred)
    gt_boundary = seg2bmap(gt)
    num_pred = int(np.count_nonzero(pred_boundary))
    num_gt = int(np.count_nonzero(gt_boundary))
    if num_pred == 0 and num_gt == 0:
        precision, recall = 1.0, 1.0
    elif num_pred == 0:
        precision, recall = 1.0, 0.0
    elif num_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        pred_matched, gt_matched = match_boundaries(pred_boundary, gt_boundary, radius)
        precision, recall = pred_matched / num_pred, gt_matched / num_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)
