"""Semi-supervised VOS metrics: region J, boundary F and J&F, per object and overall.

Definitions follow the DAVIS 2017 evaluation (``davis2017-evaluation``: ``davis2017/metrics.py``
``db_eval_iou`` / ``f_measure``, ``davis2017/evaluation.py`` ``DAVISEvaluation``) and the SA-V evaluator
(``sam2/sav_dataset/utils/sav_benchmark.py``: ``VideoEvaluator``, ``Evaluator``, ``benchmark``):

* J of one object on one frame is ``|P ∩ G| / |P ∪ G|``, and 1 when both masks are empty;
  F is the boundary F-measure of :mod:`samkit.metrics.boundary`.
* Only frames with a ground-truth file are evaluated; the first and last of them are skipped by
  default (per video in the DAVIS layout, per object folder in the SA-V layout), as both evaluators do.
* An object's J (F) is the mean over its evaluated frames; the overall J (F) is the mean over all
  objects of all videos; ``J&F = (J + F) / 2``. Scores are fractions in [0, 1] (papers print x100).

Two protocols differ in which frames count for an object:

* ``protocol="sav"`` (default; SA-V evaluator and vos-benchmark, used for SAM 2 / SAM2Long numbers):
  an object is scored from the first evaluated frame where it appears in the ground truth *or* the
  prediction, on every later evaluated frame; only objects present in the evaluated ground truth
  are reported.
* ``protocol="davis"`` (DAVIS 2017 semi-supervised): objects are ids ``1..max`` of the first
  annotated ground-truth frame (SA-V layout: every object folder) and each is scored on every
  evaluated frame.

Files. ``davis`` layout: ``{root}/{video}/{frame}.png`` palette or grayscale label maps, pixel value =
object id. In the ground truth, 255 is void and is treated as background, as DAVIS 2017
semi-supervised does (``get_all_masks`` zeroes it and passes no void mask) and as SAM2Long's copy of
the SA-V evaluator does (the unmodified SA-V evaluator would report a spurious object 255).
``sav`` layout: ``{root}/{video}/{obj}/{frame}.png`` binary PNGs (any non-zero value is the object).
A missing prediction file counts as an empty mask (both official tools stop with an error instead;
``strict=True`` raises :class:`~samkit.InputError` naming the file). A missing prediction *video*
folder is always an error: pass ``videos=`` to evaluate a subset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samkit.constants import VOID_LABEL
from samkit.errors import InputError
from samkit.io.masks import read_palette_png
from samkit.io.video import natural_sort_key
from samkit.metrics.boundary import boundary_f_measure, boundary_radius

LAYOUTS = ("davis", "sav")
PROTOCOLS = ("sav", "davis")
NUM_LABELS = 256
MASK_SUFFIX = ".png"
_MAX_LISTED = 5


@dataclass(frozen=True)
class ObjectScore:
    """One object's mean J and F over its ``num_frames`` evaluated frames."""

    J: float
    F: float
    num_frames: int

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2


@dataclass(frozen=True)
class VOSResult:
    """Overall and per-object scores; ``result["J&F"]`` reads like the ``--json`` output.

    ``per_object`` keys are ``"<video>/<obj>"`` (``obj`` is the SA-V object folder name, or the
    DAVIS object id written with three digits as the SA-V evaluator prints it).
    ``missing_predictions`` lists prediction files that were absent and scored as empty masks;
    ``unscored`` lists ground-truth objects that had no frame to score.
    """

    J: float
    F: float
    per_object: dict[str, ObjectScore]
    missing_predictions: tuple[str, ...] = ()
    unscored: tuple[str, ...] = ()

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2

    def to_dict(self) -> dict[str, Any]:
        """``{"J", "F", "J&F", "per_object": {"<video>/<obj>": {"J", "F"}}}``, the CLI's JSON."""
        return {
            "J": self.J,
            "F": self.F,
            "J&F": self.JF,
            "per_object": {key: {"J": score.J, "F": score.F} for key, score in self.per_object.items()},
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]


@dataclass(frozen=True)
class _VideoTask:
    name: str
    gt_dir: Path
    pred_dir: Path
    layout: str
    skip_first_last: bool
    strict: bool
    protocol: str


@dataclass
class _VideoOutcome:
    scores: dict[str, ObjectScore] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)


def region_jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """J of a bool (H, W) prediction against a bool (H, W) ground truth; 1 when both are empty."""
    intersection = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else intersection / union


class _ObjectFrames:
    """Per-frame J and F of one object, in frame order."""

    def __init__(self) -> None:
        self.j: list[float] = []
        self.f: list[float] = []

    def add(self, pred: np.ndarray, gt: np.ndarray, radius: int) -> None:
        if not pred.any() and not gt.any():
            self.j.append(1.0)
            self.f.append(1.0)
            return
        self.j.append(region_jaccard(pred, gt))
        self.f.append(boundary_f_measure(pred, gt, radius))

    def score(self) -> ObjectScore:
        return ObjectScore(J=float(np.mean(self.j)), F=float(np.mean(self.f)), num_frames=len(self.j))


def _png_stems(folder: Path) -> list[str]:
    """Mask frame names in temporal order (digit runs compared as numbers, as frame folders are read)."""
    stems = [
        entry.name[: -len(MASK_SUFFIX)]
        for entry in os.scandir(folder)
        if entry.is_file() and entry.name.endswith(MASK_SUFFIX) and not entry.name.startswith(".")
    ]
    return sorted(stems, key=natural_sort_key)


def _subfolders(folder: Path) -> list[str]:
    return sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
    )


def _video_layout(gt_dir: Path, requested: str | None) -> str:
    """The layout of one ground-truth video folder, checked against the requested one."""
    has_frames = bool(_png_stems(gt_dir))
    has_objects = bool(_subfolders(gt_dir))
    if has_frames and has_objects:
        raise InputError(
            f"{gt_dir} holds both PNG frames and sub-folders; expected either {{frame}}.png label maps "
            "(davis layout) or {obj}/{frame}.png object folders (sav layout)"
        )
    if not has_frames and not has_objects:
        raise InputError(f"{gt_dir} holds no {{frame}}.png masks and no object folders")
    found = "davis" if has_frames else "sav"
    if requested is not None and requested != found:
        expected = "{frame}.png label maps" if requested == "davis" else "{obj}/{frame}.png object folders"
        raise InputError(
            f"{gt_dir} is in the {found} layout but layout={requested!r} expects {expected}; "
            f"pass layout={found!r} (or leave it out to detect the layout)"
        )
    return found


def _frames_to_evaluate(frames: list[str], skip_first_last: bool) -> list[str]:
    return frames[1:-1] if skip_first_last else frames


def _read_labels(path: Path) -> np.ndarray:
    """A DAVIS-layout label map as uint8 (H, W)."""
    return read_palette_png(path)


def _read_binary(path: Path) -> np.ndarray:
    """An SA-V-layout object PNG as bool (H, W); like the SA-V evaluator, at most two values are allowed."""
    values = read_palette_png(path)
    distinct = np.flatnonzero(np.bincount(values.ravel(), minlength=NUM_LABELS))
    if distinct.size > 2:
        raise InputError(
            f"{path} holds values {distinct[:8].tolist()}; an SA-V layout PNG is one binary object mask "
            "(background 0, object any one non-zero value)"
        )
    return values > 0


def _check_shapes(gt: np.ndarray, pred: np.ndarray, gt_path: Path, pred_path: Path) -> None:
    if gt.shape != pred.shape:
        raise InputError(
            f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground truth {gt_path} is "
            f"{gt.shape[1]}x{gt.shape[0]}; predictions must be at the ground-truth resolution"
        )


def _present_ids(labels: np.ndarray) -> set[int]:
    counts = np.bincount(labels.ravel(), minlength=NUM_LABELS)
    return {int(label) for label in np.flatnonzero(counts) if label != 0}


def _prediction(
    path: Path,
    gt: np.ndarray,
    task: _VideoTask,
    outcome: _VideoOutcome,
    reader: Callable[[Path], np.ndarray],
) -> np.ndarray:
    """The predicted mask at ``path``, or an empty one like ``gt`` (recorded as missing) when it is absent."""
    if path.is_file():
        return reader(path)
    if task.strict:
        raise InputError(
            f"prediction {path} is missing (strict=True); every annotated frame needs a prediction"
        )
    outcome.missing.append(str(path))
    return np.zeros_like(gt)


def _object_key(video: str, obj: int | str) -> str:
    return f"{video}/{obj:03d}" if isinstance(obj, int) else f"{video}/{obj}"


def _evaluate_davis_video(task: _VideoTask, outcome: _VideoOutcome) -> None:
    frames = _png_stems(task.gt_dir)
    objects: dict[int, _ObjectFrames] = {}
    reported: set[int] = set()
    if task.protocol == "davis":
        first = _read_labels(task.gt_dir / f"{frames[0]}{MASK_SUFFIX}")
        first[first == VOID_LABEL] = 0
        reported = set(range(1, int(first.max()) + 1))
        objects = {obj_id: _ObjectFrames() for obj_id in sorted(reported)}
    for frame in _frames_to_evaluate(frames, task.skip_first_last):
        gt_path = task.gt_dir / f"{frame}{MASK_SUFFIX}"
        pred_path = task.pred_dir / f"{frame}{MASK_SUFFIX}"
        gt = _read_labels(gt_path)
        gt[gt == VOID_LABEL] = 0
        pred = _prediction(pred_path, gt, task, outcome, _read_labels)
        _check_shapes(gt, pred, gt_path, pred_path)
        if task.protocol == "sav":
            gt_ids = _present_ids(gt)
            reported |= gt_ids
            for obj_id in sorted(gt_ids | _present_ids(pred)):
                objects.setdefault(obj_id, _ObjectFrames())
        radius = boundary_radius(gt.shape)
        for obj_id, frames_of_object in objects.items():
            frames_of_object.add(pred == obj_id, gt == obj_id, radius)
    for obj_id in sorted(reported):
        key = _object_key(task.name, obj_id)
        if objects[obj_id].j:
            outcome.scores[key] = objects[obj_id].score()
        else:
            outcome.unscored.append(key)


def _evaluate_sav_video(task: _VideoTask, outcome: _VideoOutcome) -> None:
    for obj in _subfolders(task.gt_dir):
        gt_dir, pred_dir = task.gt_dir / obj, task.pred_dir / obj
        frames_of_object = _ObjectFrames()
        started = in_gt = False
        for frame in _frames_to_evaluate(_png_stems(gt_dir), task.skip_first_last):
            gt_path = gt_dir / f"{frame}{MASK_SUFFIX}"
            pred_path = pred_dir / f"{frame}{MASK_SUFFIX}"
            gt = _read_binary(gt_path)
            pred = _prediction(pred_path, gt, task, outcome, _read_binary)
            _check_shapes(gt, pred, gt_path, pred_path)
            gt_present = bool(gt.any())
            in_gt |= gt_present
            started |= task.protocol == "davis" or gt_present or bool(pred.any())
            if started:
                frames_of_object.add(pred, gt, boundary_radius(gt.shape))
        key = _object_key(task.name, obj)
        if frames_of_object.j and (in_gt or task.protocol == "davis"):
            outcome.scores[key] = frames_of_object.score()
        else:
            outcome.unscored.append(key)


def _evaluate_video(task: _VideoTask) -> _VideoOutcome:
    outcome = _VideoOutcome()
    if task.layout == "davis":
        _evaluate_davis_video(task, outcome)
    else:
        _evaluate_sav_video(task, outcome)
    return outcome


def _check_choice(value: Any, name: str, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise InputError(
            f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}"
        )


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _video_names(gt_root: Path, pred_root: Path, videos: Sequence[str] | None) -> list[str]:
    available = _subfolders(gt_root)
    if videos is None:
        names = available
    else:
        names = list(dict.fromkeys(videos))
        unknown = [name for name in names if name not in set(available)]
        if unknown:
            raise InputError(f"videos {_listing(unknown)} have no ground-truth folder in {gt_root}")
    if not names:
        raise InputError(f"{gt_root} holds no video folders; expected {{gt_root}}/{{video}}/... ground truth")
    missing = [name for name in names if not (pred_root / name).is_dir()]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(names)} videos have no prediction folder in {pred_root}: "
            f"{_listing(missing)}; pass videos=[...] (CLI: --videos) to evaluate a subset"
        )
    return names


def evaluate(
    gt_root: str | os.PathLike[str],
    pred_root: str | os.PathLike[str],
    layout: str | None = None,
    skip_first_last: bool = True,
    workers: int = 1,
    *,
    strict: bool = False,
    protocol: str = "sav",
    videos: Sequence[str] | None = None,
) -> VOSResult:
    """J, F and J&F of the predictions under ``pred_root`` against the ground truth under ``gt_root``.

    ``layout`` is ``"davis"``, ``"sav"`` or ``None`` (detected per video, as the SA-V evaluator does);
    ``pred_root`` must mirror ``gt_root``. ``skip_first_last`` drops the first and last annotated
    frames (the semi-supervised standard). ``workers > 1`` evaluates videos in a process pool.
    ``protocol`` picks the SA-V or DAVIS 2017 frame rule (see the module docstring); ``videos``
    restricts the evaluation to those video folders.
    """
    if layout is not None:
        _check_choice(layout, "layout", LAYOUTS)
    _check_choice(protocol, "protocol", PROTOCOLS)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive int, got {workers!r}")
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    for root, role in ((gt_root, "ground-truth"), (pred_root, "prediction")):
        if not root.is_dir():
            raise InputError(f"{role} root {root} is not a folder")
    tasks = [
        _VideoTask(
            name=name,
            gt_dir=gt_root / name,
            pred_dir=pred_root / name,
            layout=_video_layout(gt_root / name, layout),
            skip_first_last=skip_first_last,
            strict=strict,
            protocol=protocol,
        )
        for name in _video_names(gt_root, pred_root, videos)
    ]
    if workers == 1 or len(tasks) == 1:
        outcomes = [_evaluate_video(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            outcomes = list(pool.map(_evaluate_video, tasks))
    per_object = {key: score for outcome in outcomes for key, score in outcome.scores.items()}
    if not per_object:
        raise InputError(
            f"no object could be scored under {gt_root}: every video has too few annotated frames "
            "or no annotated object (try skip_first_last=False / --keep-first-last)"
        )
    return VOSResult(
        J=float(np.mean([score.J for score in per_object.values()])),
        F=float(np.mean([score.F for score in per_object.values()])),
        per_object=per_object,
        missing_predictions=tuple(path for outcome in outcomes for path in outcome.missing),
        unscored=tuple(key for outcome in outcomes for key in outcome.unscored),
    )
