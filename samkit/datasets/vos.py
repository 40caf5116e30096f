"""VOS benchmark folders: which videos to track, their frames, and each object's prompt mask.

Layouts (``root`` is the dataset folder the user downloaded):

* ``davis`` (DAVIS 2017): ``{root}/JPEGImages/480p/{video}/*.jpg``, ``{root}/Annotations/480p/{video}/*.png``
  palette label maps, split lists ``{root}/ImageSets/2017/{split}.txt``. Objects are the ids in the
  first annotation (``00000.png``) other than 0 (background) and 255 (void); every prompt is on that frame.
* ``sav`` (SA-V val / test): ``{root}/JPEGImages_24fps/{video}/*.jpg``,
  ``{root}/Annotations_6fps/{video}/{obj:03d}/*.png`` binary masks at 6 fps, split lists
  ``{root}/{split}.txt`` (e.g. ``sav_val``). An object's prompt is its first annotated frame where
  the mask is not empty (frame 0 in SA-V). Object folders are numbered from ``000``, but samkit object
  ids start at 1, so the object in folder ``k`` gets id ``k + 1``; ``VideoEntry.object_names`` maps ids
  back to folder names, which is what per-object outputs must use for the SA-V evaluator.
* ``lvos`` (LVOS v2; also the YouTube-VOS / MOSE ``valid`` layout): ``{root}/{split}/JPEGImages/{video}``,
  ``{root}/{split}/Annotations/{video}/*.png`` palette label maps (``split`` defaults to ``valid``;
  ``root`` may also be the split folder itself). Objects may first appear after frame 0: each object's
  prompt is the first annotation where its id is present. Assumption: the annotation PNGs alone define
  the objects (the ``meta`` JSON files are not read).

Annotation frames map to frame indices by file stem (``00045.png`` -> the frame ``00045.jpg``), with
frames ordered as :class:`samkit.io.video.FolderVideo` orders them. Prompts are read lazily, per video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from samkit.constants import VOID_LABEL
from samkit.errors import InputError
from samkit.io.masks import read_binary_png, read_palette_png
from samkit.io.video import FRAME_EXTENSIONS, natural_sort_key
from samkit.prompts import Mask
from samkit.results import COCO_RLE_FILE, OVERLAY_FILE, VIDEO_FORMATS

LAYOUTS = ("davis", "sav", "lvos")
MASK_SUFFIX = ".png"
DAVIS_RESOLUTION = "480p"
DAVIS_SPLIT_DIR = Path("ImageSets") / "2017"
SAV_FRAMES_DIR = "JPEGImages_24fps"
SAV_ANNOTATIONS_DIR = "Annotations_6fps"
SAV_ID_OFFSET = 1
"""samkit object id of the SA-V object folder ``k`` is ``k + SAV_ID_OFFSET`` (ids start at 1, folders at 000)."""
LVOS_DEFAULT_SPLIT = "valid"
FRAMES_DIR = "JPEGImages"
ANNOTATIONS_DIR = "Annotations"


@dataclass(frozen=True, eq=False)
class ObjectPrompt:
    """One object's first annotation: the prompt a semi-supervised tracker starts from."""

    obj_id: int
    frame_index: int
    frame_name: str
    mask: np.ndarray  # bool (H, W)


@dataclass(frozen=True, eq=False)
class VideoEntry:
    """One benchmark video: its frames (``frame_names`` in reading order) and annotations.

    ``annotations`` and ``object_names`` read the annotation PNGs on first use.
    """

    name: str
    layout: str
    frames_dir: Path
    annotations_dir: Path

    @cached_property
    def frame_names(self) -> tuple[str, ...]:
        """Frame file stems in reading order; a missing or empty frame folder is an InputError of this
        video alone (a benchmark run reports it and goes on with the others)."""
        if not self.frames_dir.is_dir():
            raise InputError(f"video {self.name}: its frame folder {self.frames_dir} does not exist")
        names = _frame_stems(self.frames_dir)
        if not names:
            raise InputError(
                f"video {self.name}: {self.frames_dir} holds no {'/'.join(FRAME_EXTENSIONS)} frames"
            )
        return names

    @cached_property
    def annotations(self) -> dict[int, ObjectPrompt]:
        """``{obj_id: ObjectPrompt}``, objects in id order."""
        if self.layout == "sav":
            prompts = self._sav_prompts()
        else:
            first_only = self.layout == "davis"
            prompts = self._label_map_prompts(first_only=first_only)
        if not prompts:
            raise InputError(f"video {self.name}: no annotated object in {self.annotations_dir}")
        return dict(sorted(prompts.items()))

    @cached_property
    def object_names(self) -> dict[int, str]:
        """``{obj_id: name}``: the folder name per-object outputs use (SA-V: the ground-truth folder)."""
        if self.layout == "sav":
            return {int(folder) + SAV_ID_OFFSET: folder for folder in self._sav_object_folders()}
        return {obj_id: f"{obj_id:03d}" for obj_id in self.annotations}

    @property
    def first_prompt_index(self) -> int:
        """Index of the earliest prompt frame (the tracker's first output frame)."""
        return min(prompt.frame_index for prompt in self.annotations.values())

    def prompts(self) -> dict[int, Mask]:
        """``{obj_id: samkit.Mask}`` for ``Segmenter.predict(entry.frames_dir, prompts=...)``."""
        return {obj_id: Mask(p.mask, frame=p.frame_index) for obj_id, p in self.annotations.items()}

    def _frame_index(self, annotation: Path) -> int:
        stem = annotation.name[: -len(MASK_SUFFIX)]
        try:
            return self._frame_positions[stem]
        except KeyError:
            raise InputError(
                f"annotation {annotation} has no frame named {stem} in {self.frames_dir}"
            ) from None

    @cached_property
    def _frame_positions(self) -> dict[str, int]:
        return {stem: index for index, stem in enumerate(self.frame_names)}

    def _annotation_files(self, folder: Path) -> list[Path]:
        files = [
            Path(entry.path)
            for entry in os.scandir(folder)
            if entry.is_file() and entry.name.endswith(MASK_SUFFIX) and not entry.name.startswith(".")
        ]
        return sorted(files, key=lambda path: natural_sort_key(path.stem))

    def _sav_object_folders(self) -> list[str]:
        folders = sorted(
            entry.name
            for entry in os.scandir(self.annotations_dir)
            if entry.is_dir() and entry.name.isdigit()
        )
        if not folders:
            raise InputError(f"{self.annotations_dir} holds no {{obj:03d}} object folders (SA-V layout)")
        return folders

    def _sav_prompts(self) -> dict[int, ObjectPrompt]:
        prompts = {}
        for folder in self._sav_object_folders():
            obj_id = int(folder) + SAV_ID_OFFSET
            for path in self._annotation_files(self.annotations_dir / folder):
                mask = read_binary_png(path)
                if mask.any():
                    prompts[obj_id] = ObjectPrompt(obj_id, self._frame_index(path), path.stem, mask)
                    break
        return prompts

    def _label_map_prompts(self, first_only: bool) -> dict[int, ObjectPrompt]:
        files = self._annotation_files(self.annotations_dir)
        if not files:
            raise InputError(
                f"{self.annotations_dir} holds no {{frame}}.png annotations of video {self.name}"
            )
        prompts: dict[int, ObjectPrompt] = {}
        for path in files[:1] if first_only else files:
            labels = read_palette_png(path)
            ids = np.flatnonzero(np.bincount(labels.ravel(), minlength=VOID_LABEL + 1))
            for obj_id in (int(value) for value in ids):
                if obj_id in (0, VOID_LABEL) or obj_id in prompts:
                    continue
                prompts[obj_id] = ObjectPrompt(obj_id, self._frame_index(path), path.stem, labels == obj_id)
        return prompts


def _frame_stems(frames_dir: Path) -> tuple[str, ...]:
    """Frame file stems in the order :class:`samkit.io.video.FolderVideo` reads them."""
    stems = [
        entry.name.rsplit(".", 1)[0]
        for entry in os.scandir(frames_dir)
        if entry.is_file()
        and not entry.name.startswith(".")
        and os.path.splitext(entry.name)[1].lower() in FRAME_EXTENSIONS
    ]
    return tuple(sorted(stems, key=natural_sort_key))


def _require_dir(path: Path, layout: str, root: Path) -> Path:
    if not path.is_dir():
        raise InputError(f"{root} does not look like a {layout} dataset: expected the folder {path}")
    return path


def _split_names(list_file: Path, layout: str) -> list[str]:
    if not list_file.is_file():
        raise InputError(f"split list {list_file} not found ({layout} layout)")
    names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(f"split list {list_file} names no video")
    return names


def _video_names(annotations_root: Path, split_file: Path | None, layout: str) -> list[str]:
    available = sorted(
        (
            entry.name
            for entry in os.scandir(annotations_root)
            if entry.is_dir() and not entry.name.startswith(".")
        ),
        key=natural_sort_key,
    )
    if split_file is None:
        return available
    names = _split_names(split_file, layout)
    missing = [name for name in names if name not in set(available)]
    if missing:
        raise InputError(
            f"{len(missing)} videos of {split_file} have no annotation folder in {annotations_root}: {missing[:5]}"
        )
    return names


def _lvos_split_dir(root: Path, split: str | None) -> Path:
    if split is not None:
        return _require_dir(root / split, "lvos", root)
    if (root / LVOS_DEFAULT_SPLIT).is_dir():
        return root / LVOS_DEFAULT_SPLIT
    if (root / FRAMES_DIR).is_dir() and (root / ANNOTATIONS_DIR).is_dir():
        return root  # the split folder itself
    raise InputError(
        f"{root} does not look like a lvos dataset: expected the folder {root / LVOS_DEFAULT_SPLIT / FRAMES_DIR} "
        f"(or {root / FRAMES_DIR} when the root is the split folder)"
    )


def list_videos(
    root: str | os.PathLike[str],
    layout: str,
    split: str | None = None,
    *,
    resolution: str = DAVIS_RESOLUTION,
) -> list[VideoEntry]:
    """The videos of a VOS benchmark folder (see the module docstring for each layout).

    ``split`` selects a video list: DAVIS ``ImageSets/2017/{split}.txt`` (e.g. ``"val"``), SA-V
    ``{root}/{split}.txt`` (e.g. ``"sav_val"``), LVOS the split folder (default ``"valid"``). Without
    it, every annotated video is listed. ``resolution`` is DAVIS's ``480p`` or ``Full-Resolution``.
    """
    if layout not in LAYOUTS:
        raise InputError(
            f"layout={layout!r} is not a VOS dataset layout; expected one of {', '.join(LAYOUTS)}"
        )
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root {root} is not a folder")
    if layout == "davis":
        frames_root = _require_dir(root / FRAMES_DIR / resolution, layout, root)
        annotations_root = _require_dir(root / ANNOTATIONS_DIR / resolution, layout, root)
        split_file = None if split is None else root / DAVIS_SPLIT_DIR / f"{split}.txt"
    elif layout == "sav":
        frames_root = _require_dir(root / SAV_FRAMES_DIR, layout, root)
        annotations_root = _require_dir(root / SAV_ANNOTATIONS_DIR, layout, root)
        split_file = None if split is None else root / f"{split}.txt"
    else:
        split_dir = _lvos_split_dir(root, split)
        frames_root = _require_dir(split_dir / FRAMES_DIR, layout, root)
        annotations_root = _require_dir(split_dir / ANNOTATIONS_DIR, layout, root)
        split_file = None
    entries = []
    for name in _video_names(annotations_root, split_file, layout):
        entries.append(VideoEntry(name, layout, frames_root / name, annotations_root / name))
    if entries and not any(entry.frames_dir.is_dir() and _frame_stems(entry.frames_dir) for entry in entries):
        raise InputError(
            f"{root} does not look like a {layout} dataset: no video folder under {frames_root} holds "
            f"{'/'.join(FRAME_EXTENSIONS)} frames"
        )
    if not entries:
        raise InputError(f"{annotations_root} holds no video folders ({layout} layout)")
    return entries


def expected_outputs(entry: VideoEntry, out_dir: str | os.PathLike[str], format: str) -> list[Path]:
    """The files ``VideoResult.save(out_dir / entry.name, format)`` leaves for a finished video.

    Tracking outputs every frame from the earliest prompt on; ``per-object`` writes each object from
    its own prompt frame on, into the folder ``entry.object_names`` gives it.
    """
    if format not in VIDEO_FORMATS:
        raise InputError(f"unknown output format {format!r}; choose one of {', '.join(VIDEO_FORMATS)}")
    video_dir = Path(out_dir) / entry.name
    if format == "coco-rle":
        return [video_dir / COCO_RLE_FILE]
    if format == "overlay":
        return [video_dir / OVERLAY_FILE]
    frames = entry.frame_names
    if format == "davis":
        return [video_dir / f"{stem}{MASK_SUFFIX}" for stem in frames[entry.first_prompt_index :]]
    return [
        video_dir / entry.object_names[obj_id] / f"{stem}{MASK_SUFFIX}"
        for obj_id, prompt in entry.annotations.items()
        for stem in frames[prompt.frame_index :]
    ]


def is_complete(entry: VideoEntry, out_dir: str | os.PathLike[str], format: str) -> bool:
    """Whether every expected output of ``entry`` exists (writers are atomic, so existing files are whole)."""
    return all(path.is_file() for path in expected_outputs(entry, out_dir, format))
