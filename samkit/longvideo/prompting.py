"""Inference state and prompts of ``TreeTracker``: sam2's own ``add_new_points_or_box`` / ``add_new_mask``
on a lazily read video, with the correction semantics chosen by ``TreeConfig.corrections_as_cond``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from samkit.longvideo.frames import LazyFrames
from samkit.longvideo.memory import TrackedFrames

if TYPE_CHECKING:
    from samkit.io.video import VideoSource

MODEL_FLAGS_LOCK = threading.RLock()
"""Held while a prompt runs with sam2 model flags set for it, so threads sharing the model never see (or
restore) each other's values. Only prompt calls read these flags; propagation does not."""


class PromptingMixin:
    """``init_state``, ``object_index``, ``add_points_or_box`` and ``add_mask`` of ``TreeTracker``."""

    model: Any
    tree: Any

    @torch.inference_mode()
    def init_state(self, video: VideoSource, offload_state_to_cpu: bool = False) -> dict[str, Any]:
        """A sam2 1.1.0 ``inference_state`` over a lazily read video (no frame is decoded yet)."""
        device = self.model.device
        state: dict[str, Any] = {
            "images": LazyFrames(video, self.model.image_size),
            "num_frames": len(video),
            "offload_video_to_cpu": True,
            "offload_state_to_cpu": offload_state_to_cpu,
            "video_height": video.height,
            "video_width": video.width,
            "device": device,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        return state

    def object_index(self, state: dict[str, Any], obj_id: int) -> int:
        """sam2's object slot for ``obj_id`` (created if new), with a compact tracked-frames map."""
        obj_idx = self.model._obj_id_to_idx(state, obj_id)
        tracked = state["frames_tracked_per_obj"]
        if not isinstance(tracked[obj_idx], TrackedFrames):
            tracked[obj_idx] = TrackedFrames(state["num_frames"])
        return obj_idx

    @torch.inference_mode()
    def add_points_or_box(
        self,
        state: dict[str, Any],
        frame_idx: int,
        obj_id: int,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        clear_old_points: bool = True,
    ) -> torch.Tensor:
        """Clicks / a box (video pixels) for one object on one frame; returns the frame's video-res logits.
        ``clear_old_points=False`` adds the clicks to that frame's earlier ones (sam2's interactive use)."""
        self.object_index(state, obj_id)
        with self._prompt_flags():
            _, _, masks = self.model.add_new_points_or_box(
                state, frame_idx, obj_id, points=points, labels=labels, clear_old_points=clear_old_points,
                normalize_coords=True, box=box,
            )
        return masks

    @torch.inference_mode()
    def add_mask(self, state: dict[str, Any], frame_idx: int, obj_id: int, mask: np.ndarray) -> torch.Tensor:
        """A mask (video resolution) for one object on one frame; returns the frame's video-res logits."""
        self.object_index(state, obj_id)
        with self._prompt_flags():
            _, _, masks = self.model.add_new_mask(state, frame_idx, obj_id, mask)
        return masks

    @contextmanager
    def _prompt_flags(self) -> Iterator[None]:
        """The sam2 flags a prompt runs with: ``add_all_frames_to_correct_as_cond`` from
        ``TreeConfig.corrections_as_cond`` (``None``: the model's own), and under ``official_compat`` no hole
        filling (the official code never fills holes). Set and restored under ``MODEL_FLAGS_LOCK``."""
        model = self.model
        as_cond = self.tree.corrections_as_cond
        with MODEL_FLAGS_LOCK:
            previous = model.add_all_frames_to_correct_as_cond, model.fill_hole_area
            if as_cond is not None:
                model.add_all_frames_to_correct_as_cond = as_cond
            if self.tree.official_compat:
                model.fill_hole_area = 0
            try:
                yield
            finally:
                model.add_all_frames_to_correct_as_cond, model.fill_hole_area = previous
