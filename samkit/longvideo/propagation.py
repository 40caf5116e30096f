"""Frame-major propagation of ``TreeTracker``: start nodes, one step per frame, streaming commits.

A frame is yielded as soon as every live pathway of every object passes through the same node there
(``tree.frontier``), which equals backtracking the best pathway at the end of the video. When an object's
pathways go ``TreeConfig.max_pending_frames`` frames without sharing one, its best pathway is committed
(``tree.bound_pending``). Committed frames are written back into sam2's per-object outputs (the last
``retention`` of them) and cut from their parents, so only pathway memories still hold them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from samkit.longvideo.tree import (
    PROMPT,
    ROOT,
    TRACKED,
    Node,
    Slots,
    bound_pending,
    common_ancestor,
    frontier,
    nodes_on,
    release,
    unique_nodes,
)

PENDING_KEY = "samkit_pending_frames"
"""Inference-state entry: frames of the running propagation tracked but not yet final."""


class PropagationMixin:
    """``propagate`` and its per-frame step for ``TreeTracker``."""

    model: Any
    tree: Any
    retention: int
    history_limit: int
    filters_memory: bool

    @torch.inference_mode()
    def propagate(
        self,
        state: dict[str, Any],
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], torch.Tensor, list[float]]]:
        """Track every object; yields ``(frame_idx, obj_ids, video_res_logits [N,1,H,W], presence)`` per
        frame, in processing order, each once it is final (same frames and order as sam2)."""
        model = self.model
        model.propagate_in_video_preflight(state)
        obj_ids = list(state["obj_ids"])
        num_frames = state["num_frames"]
        if start_frame_idx is None:
            start_frame_idx = min(
                t for out in state["output_dict_per_obj"].values() for t in out["cond_frame_outputs"]
            )
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = list(range(start_frame_idx, end - 1, -1)) if start_frame_idx > 0 else []
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = list(range(start_frame_idx, end + 1))
        if not order:
            return
        slots: Slots = []
        for obj_idx in range(len(obj_ids)):
            start = self._start_node(state, obj_idx, start_frame_idx, reverse)
            slots.append(None if start is None else [start] * self.tree.num_pathways)
        emitted = 0  # frames of ``order`` already yielded
        for position, frame_idx in enumerate(order):
            slots = self._step(state, frame_idx, slots, reverse)
            if position == len(order) - 1:  # end: backtrack each object's best pathway (slot 0)
                state[PENDING_KEY] = 0
                heads = [None if beam is None else beam[0] for beam in slots]
                yield from self._emit(state, obj_ids, heads, order[emitted:], reverse)
                return
            slots = bound_pending(slots, order[0], reverse, position, self.tree.max_pending_frames)
            final = self._frontier(slots, order, reverse, position)
            if final is not None and final >= emitted:
                state[PENDING_KEY] = position - final
                heads = [None if beam is None else common_ancestor(beam) for beam in slots]
                yield from self._emit(state, obj_ids, heads, order[emitted:final + 1], reverse)
                emitted = final + 1
            else:
                state[PENDING_KEY] = position + 1 - emitted

    def _frontier(self, slots: Slots, order: list[int], reverse: bool, current: int) -> int | None:
        """Position in ``order`` of the latest frame every pathway of every object has in common."""
        return frontier(slots, order[0], reverse, current)

    def _emit(
        self, state: dict[str, Any], obj_ids: list[int], heads: list[Node | None], frames: list[int], reverse: bool
    ) -> Iterator[tuple[int, list[int], torch.Tensor, list[float]]]:
        """Yield ``frames`` (now final) along the pathway ending at each object's ``heads`` node, store
        them as sam2 outputs, and cut them from their parents (only pathway memories still hold them).

        An object whose pathway does not reach back to a frame (its first prompt comes later) is left
        out of that frame's output."""
        device = state["device"]
        per_object = [{} if head is None else nodes_on(head, frames) for head in heads]
        for frame_idx in frames:
            tracked = [(obj_idx, nodes[frame_idx]) for obj_idx, nodes in enumerate(per_object) if frame_idx in nodes]
            if not tracked:
                masks = torch.empty(0, 1, self.model.image_size // 4, self.model.image_size // 4, device=device)
            else:
                masks = torch.cat([node.payload["pred_masks"].to(device, non_blocking=True) for _, node in tracked])
            _, video_res_masks = self.model._get_orig_video_res_output(state, masks)
            self._store(state, tracked, frame_idx, reverse)
            yield (frame_idx, [obj_ids[obj_idx] for obj_idx, _ in tracked], video_res_masks,
                   [_sigmoid(node.object_score) for _, node in tracked])
        release(per_object)

    def _store(self, state: dict[str, Any], tracked: Sequence[tuple[int, Node]], frame_idx: int,
               reverse: bool) -> None:
        """Write committed outputs back into sam2's per-object state, keeping the last ``retention`` frames."""
        for obj_idx, node in tracked:
            state["frames_tracked_per_obj"][obj_idx][frame_idx] = {"reverse": reverse}
            if node.kind != TRACKED:
                continue
            stored = state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"]
            stored[frame_idx] = node.payload
            expired = [key for key in stored if (key - frame_idx if reverse else frame_idx - key) >= self.retention]
            for key in expired:
                del stored[key]

    # ----------------------------------------------------------------------------------------- nodes

    def _start_node(self, state: dict[str, Any], obj_idx: int, start: int, reverse: bool) -> Node | None:
        """Where an object's pathways start: its stored outputs just behind ``start`` (from an earlier
        propagation) become committed history, so memory continues across calls as in SAM 2. ``None``
        when the object has neither history nor a prompt behind ``start``: it is not tracked until the
        propagation reaches its first prompt (SAM 2 would predict it from memory of a future prompt)."""
        stored = state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"]
        behind = 1 if reverse else -1
        previous = None
        for distance in range(self.retention, 0, -1):
            frame_idx = start + behind * distance
            if frame_idx in stored:
                previous = self._history_node(stored[frame_idx], frame_idx, previous)
        if previous is None:
            cond_frames = state["output_dict_per_obj"][obj_idx]["cond_frame_outputs"]
            if not any((frame_idx > start) if reverse else (frame_idx < start) for frame_idx in cond_frames):
                return None
            return Node(None, None, ROOT)
        if previous.frame == start + behind:
            return previous
        return Node(None, previous, ROOT, history=previous.child_history(self.history_limit))

    def _history_node(self, payload: dict[str, Any], frame_idx: int, parent: Node | None) -> Node:
        iou = payload.get("samkit_iou", 1.0)
        object_score = payload.get("samkit_object_score")
        if object_score is None:
            object_score = float(payload["object_score_logits"].reshape(-1)[0])
        return Node(frame_idx, parent, TRACKED, iou=iou, object_score=object_score,
                    valid=self.tree.is_valid_memory(iou, object_score) if self.filters_memory else True,
                    history=() if parent is None else parent.child_history(self.history_limit), payload=payload)

    def _prompt_node(self, payload: dict[str, Any], frame_idx: int, parent: Node | None) -> Node:
        """A prompt frame: all pathways merge into it; the best pathway so far becomes its parent."""
        object_score = float(payload["object_score_logits"].reshape(-1)[0])
        history = () if parent is None else parent.child_history(self.history_limit)
        return Node(frame_idx, parent, PROMPT, object_score=object_score, history=history, payload=payload)

    # ------------------------------------------------------------------------------------ one frame

    def _step(self, state: dict[str, Any], frame_idx: int, slots: Slots, reverse: bool) -> Slots:
        """Advance every object's pathways by one frame."""
        num_pathways = self.tree.num_pathways
        features = None
        new_slots: Slots = []
        expansions: list[list[Any]] = []
        for obj_idx, beam in enumerate(slots):
            cond_outputs = state["output_dict_per_obj"][obj_idx]["cond_frame_outputs"]
            if frame_idx in cond_outputs:
                parent = None if beam is None else beam[0]
                new_slots.append([self._prompt_node(cond_outputs[frame_idx], frame_idx, parent)] * num_pathways)
                expansions.append([])
                continue
            if beam is None:  # not prompted yet in this direction
                new_slots.append(None)
                expansions.append([])
                continue
            if features is None:
                features = self.model._get_image_feature(state, frame_idx, batch_size=1)
            new_slots.append(None)
            expansions.append(self._expand_all(state, unique_nodes(beam), frame_idx, cond_outputs, features, reverse))
        self._fetch_scores([expansion for per_object in expansions for expansion in per_object])
        for obj_idx, beam in enumerate(slots):
            if expansions[obj_idx]:
                new_slots[obj_idx] = self._select(state, beam, expansions[obj_idx], frame_idx, features)
        for beam in slots:  # their children hold the history now; drop it so old memories do not chain up
            for node in beam or ():
                node.history = ()
        return new_slots


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exponential = math.exp(value)
    return exponential / (1.0 + exponential)
