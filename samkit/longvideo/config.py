"""``TreeConfig``: the hyper-parameters of SAM2Long's memory tree, with the paper / official / SAM 2 presets.

The defaults are the paper's settings (``TreeConfig.paper()``). ``TreeConfig.official()`` adds every
numeric quirk of the official code (Mark12Ding/SAM2Long) that changes masks; ``TreeConfig.sam2()``
turns the tree off so the tracker is exactly SAM 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from samkit.errors import InputError

PAPER_PATHWAYS = 3
PAPER_IOU_THRESHOLD = 0.1
PAPER_UNCERTAINTY_THRESHOLD = 2.0
PAPER_KEY_WEIGHT_RANGE = (0.95, 1.05)
PROMPT_FRAME_RANK_SCORE = 10.0
"""Rank score of a prompt frame when ordering memory frames for key weighting (official value)."""
MAX_VALID_SCAN = 15
"""How many valid (confident, object-present) frames a pathway's memory scan collects (16 pointers - 1)."""
IOU_ROUND_DECIMALS = 2
LOG_EPSILON = 1e-5
NO_WEIGHTING = (1.0, 1.0)
DEFAULT_MAX_PENDING_FRAMES = 300
"""Frames an object's pathways may go without sharing an ancestor before the best one is committed. Pathways
of real videos merge within a few frames (every confident frame collapses them), so this is a safety bound on
memory (up to P memory encodings and masks per waiting frame), not a setting that changes results."""


@dataclass(frozen=True)
class TreeConfig:
    """SAM2Long memory-tree settings.

    * ``num_pathways`` (P): pathways kept per object; each frame expands them into 3P candidates.
    * ``iou_threshold``: a past frame enters a pathway's memory only if its predicted IoU is above
      this (``None``: no IoU filter).
    * ``require_object_present``: ... and only if its object-score logit is > 0.
    * ``uncertainty_threshold``: when every pathway's ``|object score logit|`` is at most this, the
      survivors must have distinct rounded IoUs (diversity); otherwise plain top-P.
    * ``key_weight_range``: memory frames and object pointers are ranked by object score (prompt
      frames get ``prompt_frame_rank_score``) and their cross-attention keys scaled by evenly spaced
      weights in this range, lowest score first. ``(1.0, 1.0)`` disables the weighting.
    * ``max_valid_scan``: how many valid frames a pathway remembers.
    * ``official_compat``: reproduce the official code's numeric quirks: the object-pointer count
      off by one (``len(valid) - 1`` non-prompt pointers) and the candidate pointers projected from
      all three output tokens at once.
    * ``batch_pathways``: run an object's distinct pathways through memory attention (grouped by
      memory length), the SAM heads and the memory encoder as one batch instead of one by one.
      Pathways that collapsed onto one node are computed once either way. Meant to be faster when
      pathways stay distinct (``benchmarks/longvideo.py`` measures it), but not bit-identical: the
      mask decoder and memory encoder kernels change with the batch size, so logits differ by float
      noise (``tests/test_longvideo_batching.py`` bounds it; masks identical there). Off by default.
    * ``max_pending_frames``: a frame is yielded once every pathway of every object passes through
      it, which equals backtracking the best pathway at the end of the video. When an object's
      pathways have not shared a frame for this many frames, its best pathway (slot 0) is committed
      and the others dropped, so memory stays bounded even if pathways never merge. The only case
      where output can differ from the end-of-video backtrack; ``None``: no bound.
    * ``corrections_as_cond``: a prompt on a frame this object was already tracked on (a
      correction) becomes a conditioning (prompt) frame (``True``: every later propagation keeps it
      and restarts the pathways there) or stays a non-conditioning frame that the next propagation
      through it recomputes (``False``); ``None`` follows the SAM 2 model's own
      ``add_all_frames_to_correct_as_cond`` (``False`` in sam2's ``SAM2VideoPredictor``), as
      ``TreeConfig.sam2()`` does. A prompt on a frame not yet tracked is always a conditioning frame.
    """

    num_pathways: int = PAPER_PATHWAYS
    iou_threshold: float | None = PAPER_IOU_THRESHOLD
    uncertainty_threshold: float = PAPER_UNCERTAINTY_THRESHOLD
    require_object_present: bool = True
    key_weight_range: tuple[float, float] = PAPER_KEY_WEIGHT_RANGE
    prompt_frame_rank_score: float = PROMPT_FRAME_RANK_SCORE
    max_valid_scan: int = MAX_VALID_SCAN
    official_compat: bool = False
    iou_round_decimals: int = IOU_ROUND_DECIMALS
    log_epsilon: float = LOG_EPSILON
    batch_pathways: bool = False
    max_pending_frames: int | None = DEFAULT_MAX_PENDING_FRAMES
    corrections_as_cond: bool | None = True

    def __post_init__(self) -> None:
        if isinstance(self.num_pathways, bool) or not isinstance(self.num_pathways, int) or self.num_pathways < 1:
            raise InputError(f"TreeConfig.num_pathways must be an int >= 1, got {self.num_pathways!r}")
        if self.iou_threshold is not None and not _finite(self.iou_threshold):
            raise InputError(f"TreeConfig.iou_threshold must be a finite number or None, got {self.iou_threshold!r}")
        if not _finite(self.uncertainty_threshold) or self.uncertainty_threshold < 0:
            raise InputError(
                f"TreeConfig.uncertainty_threshold must be a finite number >= 0, got {self.uncertainty_threshold!r}"
            )
        weights = tuple(self.key_weight_range)
        if len(weights) != 2 or not all(_finite(value) and value > 0 for value in weights) or weights[0] > weights[1]:
            raise InputError(
                f"TreeConfig.key_weight_range must be (low, high) with 0 < low <= high, got {self.key_weight_range!r}"
            )
        object.__setattr__(self, "key_weight_range", (float(weights[0]), float(weights[1])))
        if not _finite(self.prompt_frame_rank_score):
            raise InputError(
                f"TreeConfig.prompt_frame_rank_score must be a finite number, got {self.prompt_frame_rank_score!r}"
            )
        if isinstance(self.max_valid_scan, bool) or not isinstance(self.max_valid_scan, int) or self.max_valid_scan < 1:
            raise InputError(f"TreeConfig.max_valid_scan must be an int >= 1, got {self.max_valid_scan!r}")
        if not isinstance(self.iou_round_decimals, int) or self.iou_round_decimals < 0:
            raise InputError(f"TreeConfig.iou_round_decimals must be an int >= 0, got {self.iou_round_decimals!r}")
        if not _finite(self.log_epsilon) or self.log_epsilon <= 0:
            raise InputError(f"TreeConfig.log_epsilon must be a positive number, got {self.log_epsilon!r}")
        if not isinstance(self.batch_pathways, bool):
            raise InputError(f"TreeConfig.batch_pathways must be True or False, got {self.batch_pathways!r}")
        if self.max_pending_frames is not None and (
            isinstance(self.max_pending_frames, bool) or not isinstance(self.max_pending_frames, int)
            or self.max_pending_frames < 1
        ):
            raise InputError(f"TreeConfig.max_pending_frames must be an int >= 1 or None, got {self.max_pending_frames!r}")
        if not (self.corrections_as_cond is None or isinstance(self.corrections_as_cond, bool)):
            raise InputError(
                f"TreeConfig.corrections_as_cond must be True, False or None, got {self.corrections_as_cond!r}"
            )

    @property
    def filters_memory(self) -> bool:
        """Whether pathways remember only confident frames (else every tracked frame, as SAM 2)."""
        return self.iou_threshold is not None or self.require_object_present

    @property
    def weights_keys(self) -> bool:
        return self.key_weight_range != NO_WEIGHTING

    def is_valid_memory(self, iou: float, object_score: float) -> bool:
        """Whether a frame with this predicted IoU and object-score logit may enter a pathway's memory."""
        if self.iou_threshold is not None and not iou > self.iou_threshold:
            return False
        return not (self.require_object_present and not object_score > 0)

    def replace(self, **changes: object) -> TreeConfig:
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)

    @classmethod
    def paper(cls) -> TreeConfig:
        """The published SAM2Long settings: P=3, IoU > 0.1, uncertainty 2, key weights 0.95-1.05."""
        return cls()

    @classmethod
    def official(cls) -> TreeConfig:
        """Paper settings plus the official code's numeric quirks (see ``official_compat``)."""
        return cls(official_compat=True)

    @classmethod
    def sam2(cls) -> TreeConfig:
        """One pathway, no memory filtering, no key weighting, corrections as the SAM 2 model says: exactly SAM 2."""
        return cls(num_pathways=1, iou_threshold=None, require_object_present=False, key_weight_range=NO_WEIGHTING,
                   corrections_as_cond=None)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


TREE_PRESETS = {"paper": TreeConfig.paper, "official": TreeConfig.official, "sam2": TreeConfig.sam2}
"""Preset names accepted wherever a tree is named by a string (``tree="paper"``, ``--tree paper``)."""
