"""``LongVideoSession``: interactive tracking over one video in the style of sam2's ``SAM2VideoPredictor``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.errors import InputError
from samkit.prompts import Box, Mask, Points
from samkit.prompts import check_obj_id as _check_obj_id

if TYPE_CHECKING:
    from typing_extensions import Self

    from samkit.io.video import VideoSource
    from samkit.longvideo.predictor import TreeTracker
    from samkit.results import FrameResult

PromptInput = Points | Box | Mask | Sequence[Points | Box | Mask]


class LongVideoSession:
    """Interactive tracking over one video, like sam2's ``SAM2VideoPredictor`` with an inference state.

    Prompts may target any object on any frame, before or after propagation. Clicks add to the clicks
    already on that frame for that object (sam2's ``clear_old_points=False``); ``replace=True`` drops
    them first; a Mask always replaces them. A prompt on a frame the object was already tracked on is a
    correction: it becomes a conditioning frame or not as ``TreeConfig.corrections_as_cond`` says. Each
    ``propagate`` call re-tracks from its start frame. Objects cannot be added or removed while a
    ``propagate`` iterator is running (corrections can; they apply from the next ``propagate``).

    A session owns its state (sam2's inference state, the decoded frames) and is meant for one thread at a
    time; sessions of one segmenter may run in different threads (the model is shared read-only).
    ``close()`` (or a ``with`` block) releases the state and the video it opened (a ``VideoSource`` passed
    in stays open: it is the caller's).
    """

    def __init__(self, tracker: TreeTracker, video: Any, offload_state_to_cpu: bool = False) -> None:
        from samkit.io.video import VideoSource, open_video

        self.tracker = tracker
        self._owns_video = not isinstance(video, VideoSource)
        self.video: VideoSource = open_video(video)
        self._running: object | None = None  # token of the propagation being iterated
        self.state: dict[str, Any] | None = None
        if self.video.num_frames is None or self.video.num_frames == 0:
            problem = ("is a one-shot stream of unknown length; the tracker needs random access: pass a folder of "
                       "frames, a video file or a list of frames") if self.video.num_frames is None else "has no frames"
            self._release_video()
            raise InputError(f"{self.video.describe()} {problem}")
        self.state = tracker.init_state(self.video, offload_state_to_cpu=offload_state_to_cpu)

    @property
    def closed(self) -> bool:
        return self.state is None

    @property
    def num_frames(self) -> int:
        return self._open_state()["num_frames"]

    @property
    def object_ids(self) -> list[int]:
        """Ids of the objects prompted so far, in the order they were added."""
        return list(self._open_state()["obj_ids"])

    def add_prompt(self, obj_id: int, prompt: PromptInput, *, replace: bool = False) -> FrameResult:
        """Prompt ``obj_id`` (new or known) with Points / Box / Mask, or a list of them (several frames
        allowed; on one frame either a Mask or Points and / or one Box). Clicks add to that frame's earlier
        clicks for the object unless ``replace=True``. Returns the masks of the last prompted frame for every
        object."""
        state = self._open_state()
        obj_id = _check_obj_id(obj_id)
        if obj_id not in state["obj_id_to_idx"]:
            self._check_idle(f"add object {obj_id}")
        by_frame = self._group_by_frame(obj_id, prompt)
        result = None
        for frame_idx, items in by_frame.items():
            result = self._prompt_frame(obj_id, frame_idx, items, replace)
        return result

    def correct(self, obj_id: int, prompt: PromptInput, *, replace: bool = False) -> FrameResult:
        """Like ``add_prompt`` but only for an object already in the session (guards against typos)."""
        obj_id = _check_obj_id(obj_id)
        if obj_id not in self._open_state()["obj_id_to_idx"]:
            raise InputError(f"cannot correct object {obj_id}: it is not in this session (known objects: "
                             f"{self.object_ids}); use add_prompt to add a new object")
        return self.add_prompt(obj_id, prompt, replace=replace)

    def propagate(
        self, reverse: bool = False, start_frame: int | None = None, max_frames: int | None = None
    ) -> Iterator[FrameResult]:
        """Track every prompted object from ``start_frame`` (default: earliest prompt frame, latest with
        ``reverse``) for at most ``max_frames`` frames; yields each ``FrameResult`` once it is final. A newer
        ``propagate`` supersedes an iterator still running."""
        start_frame, max_tracked, _ = self.plan(reverse, start_frame, max_frames)
        return self._propagation(start_frame, max_tracked, bool(reverse))

    def plan(
        self, reverse: bool = False, start_frame: int | None = None, max_frames: int | None = None
    ) -> tuple[int, int | None, int]:
        """``(start_frame, max frames after it, number of frames yielded)`` of a ``propagate`` call."""
        if not self._open_state()["obj_ids"]:
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
        state = self._open_state()
        if obj_id not in state["obj_id_to_idx"]:
            raise InputError(f"cannot remove object {obj_id}: it is not in this session (known: {self.object_ids})")
        self._check_idle(f"remove object {obj_id}")
        self.tracker.model.remove_object(state, obj_id, strict=True, need_output=False)

    def reset(self) -> None:
        """Drop every object, prompt and result (the video stays open)."""
        state = self._open_state()
        self._check_idle("reset the session")
        self.tracker.model.reset_state(state)

    def stats(self) -> dict[str, int]:
        """Sizes of what the session holds: stored per-frame outputs, prompt frames, decoded frames, cached
        features, and frames of the running propagation tracked but not final yet."""
        from samkit.longvideo.propagation import PENDING_KEY

        state = self._open_state()
        return {
            "stored_outputs": sum(len(out["non_cond_frame_outputs"]) for out in state["output_dict_per_obj"].values()),
            "prompt_outputs": sum(len(out["cond_frame_outputs"]) for out in state["output_dict_per_obj"].values()),
            "cached_frames": len(state["images"]._cache),
            "cached_features": len(state["cached_features"]),
            "pending_frames": state.get(PENDING_KEY, 0),
        }

    def close(self) -> None:
        """Release the inference state and the video this session opened (idempotent)."""
        if self.state is None:
            return
        self.state["images"].clear()
        self.state.clear()
        self.state = None
        self._running = None
        self._release_video()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ internals

    def _release_video(self) -> None:
        if self._owns_video:
            self.video.close()

    def _open_state(self) -> dict[str, Any]:
        if self.state is None:
            raise InputError("this session is closed; open a new one with segmenter.session(video)")
        return self.state

    def _check_idle(self, what: str) -> None:
        if self._running is not None:
            raise InputError(
                f"cannot {what} while propagate() is being iterated: the running propagation tracks a fixed set "
                "of objects; finish the loop or call .close() on the iterator, then propagate again"
            )

    def _propagation(self, start_frame: int, max_tracked: int | None, reverse: bool) -> Iterator[FrameResult]:
        """The frames of one propagation, marked as running while iterated."""
        from samkit.results import FrameResult

        state = self._open_state()
        token = self._running = object()
        model = self.tracker.model
        outputs = self.tracker.propagate(state, start_frame, max_tracked, reverse)
        try:
            for frame_idx, obj_ids, video_res_masks, presence in outputs:
                if len(obj_ids) > 1:
                    # (N, 1, H, W): each pixel goes to the object with the highest logit, SAM 2's rule
                    video_res_masks = model._apply_non_overlapping_constraints(video_res_masks)
                masks = (video_res_masks[:, 0] > 0.0).cpu().numpy()
                yield FrameResult(frame_idx, dict(zip(obj_ids, masks)), dict(zip(obj_ids, presence)))
                if self.state is None:
                    raise InputError("the session was closed while propagate() was being iterated")
                if self._running is not token:
                    raise InputError("this propagate() iterator was superseded by a newer propagate() call on the "
                                     "same session; iterate the newer one")
        finally:
            outputs.close()
            if self._running is token:
                self._running = None

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

    def _prompt_frame(self, obj_id: int, frame_idx: int, items: list[Points | Box | Mask],
                      replace: bool) -> FrameResult:
        from samkit.results import FrameResult

        tracker, state = self.tracker, self.state
        if isinstance(items[0], Mask):
            logits = tracker.add_mask(state, frame_idx, obj_id, items[0].mask)
        else:
            boxes = [item for item in items if isinstance(item, Box)]
            clicks = [item for item in items if isinstance(item, Points)]
            points = np.concatenate([item.xy for item in clicks]) if clicks else None
            labels = np.concatenate([item.labels for item in clicks]) if clicks else None
            box = boxes[0].xyxy if boxes else None
            obj_idx = state["obj_id_to_idx"].get(obj_id)
            earlier = obj_idx is not None and frame_idx in state["point_inputs_per_obj"][obj_idx]
            if box is not None and earlier and not replace:
                raise InputError(
                    f"object {obj_id}, frame {frame_idx}: a Box cannot be added to the clicks already on this frame "
                    "(SAM 2 takes the box before any click); pass replace=True to replace this frame's prompts"
                )
            logits = tracker.add_points_or_box(state, frame_idx, obj_id, points=points, labels=labels, box=box,
                                               clear_old_points=replace or box is not None)
        masks = (logits[:, 0] > 0.0).cpu().numpy()
        return FrameResult(frame_idx, dict(zip(state["obj_ids"], masks)))
