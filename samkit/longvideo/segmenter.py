"""``LongVideoSegmenter``: SAM2Long (or plain SAM 2) video object segmentation behind ``predict``.

``predict(video, prompt=None, *, prompts=None)`` streams a ``VideoResult``: each ``FrameResult`` is yielded as soon as the
memory tree has made it final. ``session(video)`` gives interactive control in the style of sam2's
``SAM2VideoPredictor``: prompts on any frame, corrections after propagation, objects that appear
late, forward / reverse propagation, object removal, reset.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.api import Segmenter
from samkit.building import prepare
from samkit.constants import DEFAULT_SAM2_BACKBONE
from samkit.errors import InputError
from samkit.longvideo.config import TREE_PRESETS, TreeConfig
from samkit.prompts import Box, Mask, Points, normalize_prompts
from samkit.prompts import check_obj_id as _check_obj_id
from samkit.registry import HeadSpec, get_spec

if TYPE_CHECKING:
    import torch

    from samkit.io.video import VideoSource
    from samkit.longvideo.predictor import TreeTracker
    from samkit.results import FrameResult, VideoResult

ALLOWED_PROMPTS = (Points, Box, Mask)
HEAD_DEFAULT_TREES = {"sam2long": TreeConfig.paper, "sam2": TreeConfig.sam2}

PromptInput = Points | Box | Mask | Sequence[Points | Box | Mask]


def resolve_tree(tree: TreeConfig | str | Mapping[str, Any] | None, default: TreeConfig) -> TreeConfig:
    """A ``TreeConfig`` from an instance, a preset name (paper / official / sam2) or a dict of fields."""
    if tree is None:
        return default
    if isinstance(tree, TreeConfig):
        return tree
    if isinstance(tree, str):
        if tree not in TREE_PRESETS:
            raise InputError(f"unknown tree preset {tree!r}; choose one of {', '.join(TREE_PRESETS)} or a TreeConfig")
        return TREE_PRESETS[tree]()
    if isinstance(tree, Mapping):
        fields = {field.name for field in dataclasses.fields(TreeConfig)}
        unknown = sorted(set(tree) - fields)
        if unknown:
            raise InputError(f"unknown TreeConfig field(s) {unknown}; fields: {', '.join(sorted(fields))}")
        values = dict(tree)
        if "key_weight_range" in values:
            values["key_weight_range"] = tuple(values["key_weight_range"])
        return TreeConfig(**values)
    raise InputError(f"tree must be a TreeConfig, a preset name or a dict, got {type(tree).__name__}")


def build_longvideo_segmenter(
    spec: HeadSpec | str,
    *,
    backbone: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    backbone_checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    tree: TreeConfig | str | Mapping[str, Any] | None = None,
    image_size: int | None = None,
    seed: int = 0,
    apply_postprocessing: bool | None = None,
) -> LongVideoSegmenter:
    """Registry builder of the ``sam2long`` and ``sam2`` heads (``spec`` or its name).

    ``backbone``: a SAM 2 / 2.1 registry name (default ``sam2.1-hiera-tiny``), a config of the ``sam2``
    package (``configs/sam2.1/sam2.1_hiera_l.yaml``), ``tiny-sam2``, or a YAML file. ``checkpoint`` is
    the SAM 2 file (both heads are training-free); with ``checkpoint=None`` the weights are a seeded
    random init and ``config["trained"]`` is False.
    ``apply_postprocessing``: sam2's video post-processing overrides (``build_sam2_video_predictor``'s
    default, on); default on, except with ``official_compat``, where it is off as in the official
    ``tools/vos_inference.py`` (without ``--apply_postprocessing``).
    """
    from samkit.backbones.sam2_models import build_sam2_model, resolve_sam2_config

    spec = get_spec(spec) if isinstance(spec, str) else spec
    name = spec.name
    if name not in HEAD_DEFAULT_TREES:
        raise InputError(f"build_longvideo_segmenter builds {', '.join(HEAD_DEFAULT_TREES)}, not {name!r}")
    if backbone_checkpoint is not None:
        raise InputError(f"{name!r} is training-free: its weights are the SAM 2 backbone's, so pass them as "
                         "checkpoint=, not backbone_checkpoint=")
    if name == "sam2" and tree is not None:
        raise InputError("'sam2' is plain SAM 2 (TreeConfig.sam2()); to set a memory tree use samkit.load('sam2long', "
                         "tree=...)")
    tree_config = resolve_tree(tree, HEAD_DEFAULT_TREES[name]())
    if apply_postprocessing is None:
        apply_postprocessing = not tree_config.official_compat
    backbone = str(spec.default_backbone or DEFAULT_SAM2_BACKBONE) if backbone is None else backbone
    _, backbone_spec = resolve_sam2_config(backbone)
    plan = prepare(spec, device=device, checkpoint=checkpoint, seed=seed,
                   known=backbone_spec if backbone_spec is not None else ())
    model = build_sam2_model(backbone, image_size=image_size, checkpoint=plan.checkpoint, device=plan.device,
                             video=True, apply_postprocessing=bool(apply_postprocessing),
                             seed=None if plan.trained else seed)
    config = {
        "name": name,
        "backbone": backbone,
        "image_size": int(model.image_size),
        **plan.config(),
        "tree": dataclasses.asdict(tree_config),
        "apply_postprocessing": bool(apply_postprocessing),
    }
    return LongVideoSegmenter(model, tree_config, config, plan.device, spec=spec)


class LongVideoSegmenter(Segmenter):
    """Track objects through a video with SAM2Long's memory tree over a SAM 2 video model.

    ``tree`` (a ``TreeConfig``) picks the method: ``TreeConfig.paper()`` (SAM2Long), ``.official()``
    (with the official code's quirks) or ``.sam2()`` (exactly SAM 2). The SAM 2 weights are shared by
    every session and read-only; each session owns its tracking state (see ``Segmenter``).
    """

    def __init__(self, model: Any, tree: TreeConfig, config: dict[str, Any], device: torch.device,
                 spec: HeadSpec | None = None) -> None:
        from samkit.longvideo.predictor import TreeTracker

        self.model = model
        self.tree = tree
        self.config = config
        self.device = device
        self.spec = get_spec(config.get("name", "sam2long")) if spec is None else spec
        self.tracker: TreeTracker = TreeTracker(model, tree)
        self._sessions: weakref.WeakSet[LongVideoSession] = weakref.WeakSet()

    def session(self, video: Any, offload_state_to_cpu: bool = False) -> LongVideoSession:
        """An interactive tracking session over ``video`` (a folder of frames, a video file or a list)."""
        self._ensure_open()
        session = LongVideoSession(self.tracker, video, offload_state_to_cpu=offload_state_to_cpu)
        self._sessions.add(session)
        return session

    def predict(
        self,
        inputs: Any,
        prompt: PromptInput | None = None,
        *,
        prompts: Mapping[int, PromptInput] | None = None,
        reverse: bool = False,
        start_frame: int | None = None,
        max_frames: int | None = None,
    ) -> VideoResult:
        """Segment and track the prompted objects through the video ``inputs``.

        ``prompt``: object 1's prompt(s); ``prompts``: ``{obj_id: Points | Box | Mask | [several]}``
        (each prompt names its frame). Tracking starts at ``start_frame`` (default: the
        earliest prompt frame, or the latest one with ``reverse=True``) and covers at most
        ``max_frames`` frames counting the start frame. Returns a streaming ``VideoResult``: masks at
        the video's resolution, each frame yielded once final, and no pixel in two objects (SAM 2's
        non-overlap rule: a pixel goes to the object with the highest logit). An object is reported
        from its first prompt onwards (in the propagation direction).
        """
        from samkit.results import VideoResult

        self._ensure_open()
        by_object = normalize_prompts(prompt, prompts, ALLOWED_PROMPTS, head=self.spec.name)
        if not by_object:
            raise InputError("predict needs at least one prompt: prompts={obj_id: samkit.Mask(...) | Points | Box}")
        session = self.session(inputs)
        for obj_id, object_prompts in by_object.items():
            session.add_prompt(obj_id, object_prompts)
        frames = session.propagate(reverse=reverse, start_frame=start_frame, max_frames=max_frames)
        _, _, count = session.plan(reverse, start_frame, max_frames)
        source = session.video
        return VideoResult(frames, height=source.height, width=source.width, num_frames=count,
                           fps=source.fps, video=source, frame_names=source.frame_names)

    def _release(self) -> None:
        for session in list(self._sessions):
            close = getattr(session, "close", None)
            if close is not None:
                close()
        self._sessions.clear()


class LongVideoSession:
    """Interactive tracking over one video, like sam2's ``SAM2VideoPredictor`` with an inference state.

    Prompts may target any object on any frame, before or after propagation; a prompt on an already
    tracked frame is a correction and becomes a prompt (conditioning) frame. Each ``propagate`` call
    re-tracks from its start frame.
    """

    def __init__(self, tracker: TreeTracker, video: Any, offload_state_to_cpu: bool = False) -> None:
        from samkit.io.video import open_video

        self.tracker = tracker
        self.video: VideoSource = open_video(video)
        if self.video.num_frames is None:
            raise InputError(
                f"{self.video.describe()} is a one-shot stream of unknown length; the tracker needs random access: "
                "pass a folder of frames, a video file or a list of frames"
            )
        if self.video.num_frames == 0:
            raise InputError(f"{self.video.describe()} has no frames")
        self.state = tracker.init_state(self.video, offload_state_to_cpu=offload_state_to_cpu)

    @property
    def num_frames(self) -> int:
        return self.state["num_frames"]

    @property
    def object_ids(self) -> list[int]:
        """Ids of the objects prompted so far, in the order they were added."""
        return list(self.state["obj_ids"])

    def add_prompt(self, obj_id: int, prompt: PromptInput) -> FrameResult:
        """Prompt ``obj_id`` (new or known) with Points / Box / Mask, or a list of them (several frames
        allowed; on one frame either a Mask or Points and / or one Box). Returns the masks of the last
        prompted frame for every object."""
        obj_id = _check_obj_id(obj_id)
        by_frame = self._group_by_frame(obj_id, prompt)
        result = None
        for frame_idx, items in by_frame.items():
            result = self._prompt_frame(obj_id, frame_idx, items)
        return result

    def correct(self, obj_id: int, prompt: PromptInput) -> FrameResult:
        """Like ``add_prompt`` but only for an object already in the session (guards against typos)."""
        obj_id = _check_obj_id(obj_id)
        if obj_id not in self.state["obj_id_to_idx"]:
            raise InputError(f"cannot correct object {obj_id}: it is not in this session (known objects: "
                             f"{self.object_ids}); use add_prompt to add a new object")
        return self.add_prompt(obj_id, prompt)

    def propagate(
        self, reverse: bool = False, start_frame: int | None = None, max_frames: int | None = None
    ) -> Iterator[FrameResult]:
        """Track every prompted object from ``start_frame`` (default: earliest prompt frame, latest with
        ``reverse``) for at most ``max_frames`` frames; yields each ``FrameResult`` once it is final."""
        start_frame, max_tracked, _ = self.plan(reverse, start_frame, max_frames)
        return self._frames(self.tracker.propagate(self.state, start_frame, max_tracked, bool(reverse)))

    def plan(
        self, reverse: bool = False, start_frame: int | None = None, max_frames: int | None = None
    ) -> tuple[int, int | None, int]:
        """``(start_frame, max frames after it, number of frames yielded)`` of a ``propagate`` call."""
        if not self.state["obj_ids"]:
            raise InputError("no object has a prompt yet; call add_prompt(obj_id, samkit.Mask(...)) first")
        if start_frame is None:
            prompt_frames = self._prompt_frames()
            start_frame = max(prompt_frames) if reverse else min(prompt_frames)
        else:
            self._check_frame(start_frame, "start_frame")
        max_tracked = None
        if max_frames is not None:
            if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
                raise InputError(f"max_frames must be an int >= 1, got {max_frames!r}")
            max_tracked = max_frames - 1
        # reverse tracking from frame 0 yields nothing, as in sam2
        available = (start_frame + 1 if start_frame > 0 else 0) if reverse else self.num_frames - start_frame
        count = available if max_frames is None else min(available, max_frames)
        return start_frame, max_tracked, count

    def remove_object(self, obj_id: int) -> None:
        """Forget ``obj_id`` (its prompts and results)."""
        if obj_id not in self.state["obj_id_to_idx"]:
            raise InputError(f"cannot remove object {obj_id}: it is not in this session (known: {self.object_ids})")
        self.tracker.model.remove_object(self.state, obj_id, strict=True, need_output=False)

    def reset(self) -> None:
        """Drop every object, prompt and result (the video stays open)."""
        self.tracker.model.reset_state(self.state)

    def stats(self) -> dict[str, int]:
        """Sizes of what the session holds: stored per-frame outputs, prompt frames, decoded frames."""
        state = self.state
        return {
            "stored_outputs": sum(len(out["non_cond_frame_outputs"]) for out in state["output_dict_per_obj"].values()),
            "prompt_outputs": sum(len(out["cond_frame_outputs"]) for out in state["output_dict_per_obj"].values()),
            "cached_frames": len(state["images"]._cache),
            "cached_features": len(state["cached_features"]),
        }

    # ------------------------------------------------------------------------------------ internals

    def _frames(self, outputs: Iterator[tuple[int, list[int], Any, list[float]]]) -> Iterator[FrameResult]:
        from samkit.results import FrameResult

        model = self.tracker.model
        for frame_idx, obj_ids, video_res_masks, presence in outputs:
            if len(obj_ids) > 1:
                # (N, 1, H, W): each pixel goes to the object with the highest logit, SAM 2's rule
                video_res_masks = model._apply_non_overlapping_constraints(video_res_masks)
            masks = (video_res_masks[:, 0] > 0.0).cpu().numpy()
            yield FrameResult(frame_idx, dict(zip(obj_ids, masks)), dict(zip(obj_ids, presence)))

    def _prompt_frames(self) -> list[int]:
        frames = set()
        for per_object in ("point_inputs_per_obj", "mask_inputs_per_obj"):
            for inputs in self.state[per_object].values():
                frames.update(inputs)
        for out in self.state["output_dict_per_obj"].values():
            frames.update(out["cond_frame_outputs"])
        if not frames:
            raise InputError("no object has a prompt yet; call add_prompt(obj_id, samkit.Mask(...)) first")
        return sorted(frames)

    def _check_frame(self, frame_idx: Any, what: str) -> int:
        if isinstance(frame_idx, (bool, np.bool_)) or not isinstance(frame_idx, (int, np.integer)):
            raise InputError(f"{what} must be an int frame index, got {frame_idx!r}")
        if not 0 <= frame_idx < self.num_frames:
            raise InputError(f"{what} {frame_idx} is outside the video: it has {self.num_frames} frames "
                             f"(0..{self.num_frames - 1})")
        return int(frame_idx)

    def _group_by_frame(self, obj_id: int, prompt: PromptInput) -> dict[int, list[Points | Box | Mask]]:
        items = [prompt] if isinstance(prompt, (Points, Box, Mask)) else prompt
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
            raise InputError(f"object {obj_id}: a prompt must be samkit.Points, Box or Mask, or a non-empty list of "
                             f"them, got {type(prompt).__name__}")
        by_frame: dict[int, list[Points | Box | Mask]] = {}
        for item in items:
            if not isinstance(item, (Points, Box, Mask)):
                raise InputError(f"object {obj_id}: prompts must be samkit.Points, Box or Mask, got "
                                 f"{type(item).__name__}")
            self._check_frame(item.frame, f"object {obj_id}: prompt frame")
            by_frame.setdefault(item.frame, []).append(item)
        for frame_idx, frame_items in by_frame.items():
            kinds = [type(item) for item in frame_items]
            if Mask in kinds and len(kinds) > 1:
                raise InputError(f"object {obj_id}, frame {frame_idx}: give either one Mask or Points and / or a Box")
            if kinds.count(Box) > 1:
                raise InputError(f"object {obj_id}, frame {frame_idx}: at most one Box per object and frame")
            for item in frame_items:
                if isinstance(item, Mask) and item.mask.shape != (self.video.height, self.video.width):
                    raise InputError(
                        f"object {obj_id}: the mask on frame {frame_idx} is {item.mask.shape[1]}x{item.mask.shape[0]} "
                        f"(WxH) but the video is {self.video.width}x{self.video.height}; give a mask of the frame's size"
                    )
        return by_frame

    def _prompt_frame(self, obj_id: int, frame_idx: int, items: list[Points | Box | Mask]) -> FrameResult:
        from samkit.results import FrameResult

        tracker = self.tracker
        if isinstance(items[0], Mask):
            logits = tracker.add_mask(self.state, frame_idx, obj_id, items[0].mask)
        else:
            boxes = [item for item in items if isinstance(item, Box)]
            clicks = [item for item in items if isinstance(item, Points)]
            points = np.concatenate([item.xy for item in clicks]) if clicks else None
            labels = np.concatenate([item.labels for item in clicks]) if clicks else None
            box = boxes[0].xyxy if boxes else None
            logits = tracker.add_points_or_box(self.state, frame_idx, obj_id, points=points, labels=labels, box=box)
        masks = (logits[:, 0] > 0.0).cpu().numpy()
        return FrameResult(frame_idx, dict(zip(self.state["obj_ids"], masks)))

