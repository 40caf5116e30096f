"""The SAM2Long tracking engine, a plug-in over an unmodified ``sam2==1.1.0`` ``SAM2VideoPredictor``.

``TreeTracker`` keeps sam2's own ``inference_state`` (so ``add_new_points_or_box`` / ``add_new_mask``
/ ``remove_object`` / ``reset_state`` work unchanged) and replaces ``propagate_in_video`` with a
frame-major loop:

1. the image encoder runs once per frame for all objects (sam2's feature cache);
2. for every object, every *distinct* live pathway node runs memory attention + SAM heads once
   (``SAM2Base._track_step`` on the pathway's memory view, see ``memory.py``), giving 3 candidates;
   with ``TreeConfig.batch_pathways`` the distinct nodes go through as one batch instead (upstream
   assembles each memory, pathways of equal memory length share a memory-attention call);
3. IoUs and object scores of the whole frame reach the host in one transfer (one sync per frame);
4. the tree (``tree.select_pathways``) picks the survivors; each distinct survivor is encoded into
   memory once (``SAM2Base._encode_new_memory``; one batch with ``batch_pathways``);
5. a frame is yielded as soon as it is final: when every live pathway of every object passes
   through the same node there. This equals backtracking the best pathway at the end of the video.

With ``TreeConfig.sam2()`` (one pathway, no filtering, no weighting) every call matches what
``SAM2VideoPredictor.propagate_in_video`` runs, so masks are bit-identical to SAM 2.

Memory stays bounded: frames are decoded on demand (``LazyFrames``), committed nodes are cut from
their parents so only pathway memories reference them, and each object's sam2 ``non_cond_frame_outputs``
keeps only the last ``retention`` committed frames (enough for SAM 2's memory window). A prompt added
later on a frame whose neighbours were evicted is conditioned on the prompt frames and the retained
outputs only.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from samkit.errors import InputError
from samkit.longvideo.config import TreeConfig
from samkit.longvideo.memory import (
    KeyWeightHook,
    MemoryCapture,
    TrackedFrames,
    key_token_weights,
    memory_scores,
    memory_view,
)
from samkit.longvideo.tree import (
    PROMPT,
    ROOT,
    TRACKED,
    Choice,
    Node,
    common_ancestor,
    greedy_candidate,
    select_pathways,
    unique_nodes,
)

if TYPE_CHECKING:
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    from samkit.io.video import VideoSource

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
"""sam2's ``load_video_frames`` normalisation."""
FRAME_CACHE_SIZE = 2
PIXEL_MAX = 255.0


class LazyFrames:
    """``inference_state["images"]`` that decodes and normalises a frame only when sam2 asks for it.

    Resize and normalisation repeat ``sam2.utils.misc.load_video_frames_from_jpg_images`` operation
    for operation (PIL resize to a square, /255 in float64, cast to float32, -mean, /std), so the
    model sees bit-identical inputs. Keeps only the last ``cache_size`` frames.
    """

    def __init__(self, video: VideoSource, image_size: int, cache_size: int = FRAME_CACHE_SIZE) -> None:
        self.video = video
        self.image_size = image_size
        self.cache_size = cache_size
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, index: int) -> torch.Tensor:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        from PIL import Image

        frame = Image.fromarray(self.video[index]).resize((self.image_size, self.image_size))
        image = torch.from_numpy(np.array(frame) / PIXEL_MAX).permute(2, 0, 1).to(torch.float32)  # 3 x S x S
        image -= self._mean
        image /= self._std
        self._cache[index] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image


def _connected_components_available() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


class _Expansion:
    """One distinct pathway node of one object run through memory attention + SAM heads on a frame."""

    __slots__ = ("ious", "node", "object_score", "sam_outputs", "tokens")

    def __init__(self, node: Node, sam_outputs: tuple, tokens: torch.Tensor | None) -> None:
        self.node = node
        self.sam_outputs = sam_outputs
        self.tokens = tokens
        self.ious: list[float] = []
        self.object_score = 0.0


class TreeTracker:
    """SAM2Long tracking over a ``SAM2VideoPredictor`` (see module docstring)."""

    def __init__(self, model: SAM2VideoPredictor, tree: TreeConfig) -> None:
        self.model = model
        self.tree = tree
        if tree.num_pathways > 1:
            self._check_multimask(model)
        self.filters_memory = tree.filters_memory
        stride = model.memory_temporal_stride_for_eval
        window = max(model.max_obj_ptrs_in_encoder - 1, (model.num_maskmem - 1) * stride)
        self.history_limit = tree.max_valid_scan if self.filters_memory else max(tree.max_valid_scan, window)
        self.retention = max(self.history_limit, window) + 1
        """Committed outputs kept per object in sam2's ``non_cond_frame_outputs`` (SAM 2's memory window)."""
        self.tokens_per_pointer = model.hidden_dim // model.mem_dim if model.mem_dim < model.hidden_dim else 1
        self._key_hook = KeyWeightHook(model.memory_attention) if tree.weights_keys else None
        # the official code never fills holes; SAM 2 does when its CUDA extension is built
        self._fill_holes = (
            model.fill_hole_area > 0 and _connected_components_available() and not tree.official_compat
        )
        self._tokens: torch.Tensor | None = None
        self._token_hook = (
            model.sam_mask_decoder.register_forward_hook(self._capture_tokens) if tree.num_pathways > 1 else None
        )
        batching = tree.batch_pathways and tree.num_pathways > 1
        self._memory_capture = MemoryCapture(model.memory_attention) if batching else None
        self._batch_memory_encoder = batching and not model.non_overlap_masks_for_mem_enc
        """sam2's ``non_overlap_masks_for_mem_enc`` treats a batch as different objects of one frame, so
        candidates of one object must then be encoded one by one."""

    @staticmethod
    def _check_multimask(model: Any) -> None:
        missing = [
            flag
            for flag in ("multimask_output_in_sam", "multimask_output_for_tracking", "use_multimask_token_for_obj_ptr",
                         "pred_obj_scores")
            if not getattr(model, flag, False)
        ]
        if missing or not model.multimask_min_pt_num <= 0 <= model.multimask_max_pt_num:
            raise InputError(
                "SAM2Long needs a backbone whose tracking step outputs 3 candidate masks with IoUs, object "
                f"scores and per-candidate pointers; this config lacks {missing or ['multimask_min_pt_num: 0']}. "
                "Use a sam2 / sam2.1 config, or TreeConfig.sam2() (one pathway)"
            )

    def close(self) -> None:
        """Detach the hooks from the model."""
        if self._key_hook is not None:
            self._key_hook.remove()
        if self._token_hook is not None:
            self._token_hook.remove()
            self._token_hook = None
        if self._memory_capture is not None:
            self._memory_capture.remove()
            self._memory_capture = None

    def _capture_tokens(self, module: Any, inputs: Any, outputs: tuple) -> None:
        self._tokens = outputs[2]  # sam_tokens_out [B, 3, C]

    # ----------------------------------------------------------------------------------------- state

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
        """Clicks / a box (video pixels) for one object on one frame; returns the frame's video-res logits."""
        self.object_index(state, obj_id)
        with self._prompts_as_conditioning():
            _, _, masks = self.model.add_new_points_or_box(
                state, frame_idx, obj_id, points=points, labels=labels, clear_old_points=clear_old_points,
                normalize_coords=True, box=box,
            )
        return masks

    @torch.inference_mode()
    def add_mask(self, state: dict[str, Any], frame_idx: int, obj_id: int, mask: np.ndarray) -> torch.Tensor:
        """A mask (video resolution) for one object on one frame; returns the frame's video-res logits."""
        self.object_index(state, obj_id)
        with self._prompts_as_conditioning():
            _, _, masks = self.model.add_new_mask(state, frame_idx, obj_id, mask)
        return masks

    @contextmanager
    def _prompts_as_conditioning(self) -> Iterator[None]:
        """Every prompt, including a correction on a tracked frame, becomes a conditioning frame (as sam2's
        ``add_all_frames_to_correct_as_cond=True``), so the tree restarts from it on the next propagation.
        Under ``official_compat`` the prompt frame's holes are not filled either (the official code never
        fills holes)."""
        model = self.model
        previous = model.add_all_frames_to_correct_as_cond, model.fill_hole_area
        model.add_all_frames_to_correct_as_cond = True
        if self.tree.official_compat:
            model.fill_hole_area = 0
        try:
            yield
        finally:
            model.add_all_frames_to_correct_as_cond, model.fill_hole_area = previous

    # ----------------------------------------------------------------------------------- propagation

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
        num_objects = len(obj_ids)
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
        slots: list[list[Node] | None] = []
        for obj_idx in range(num_objects):
            start = self._start_node(state, obj_idx, start_frame_idx, reverse)
            slots.append(None if start is None else [start] * self.tree.num_pathways)
        emitted = 0  # frames of ``order`` already yielded
        for position, frame_idx in enumerate(order):
            slots = self._step(state, frame_idx, slots, reverse)
            if position == len(order) - 1:  # end: backtrack each object's best pathway (slot 0)
                heads = [None if beam is None else beam[0] for beam in slots]
                yield from self._emit(state, obj_ids, heads, order[emitted:], reverse)
                return
            frontier = self._frontier(slots, order, reverse, position)
            if frontier is not None and frontier >= emitted:
                heads = [None if beam is None else common_ancestor(beam) for beam in slots]
                yield from self._emit(state, obj_ids, heads, order[emitted:frontier + 1], reverse)
                emitted = frontier + 1

    def _frontier(
        self, slots: list[list[Node] | None], order: list[int], reverse: bool, current: int
    ) -> int | None:
        """Position in ``order`` of the latest frame every pathway of every object has in common."""
        frontier = None
        tracked = [beam for beam in slots if beam is not None]
        if not tracked:
            return current
        for beam in tracked:
            ancestor = common_ancestor(beam)
            if ancestor is None or ancestor.frame is None:
                return None
            position = (order[0] - ancestor.frame) if reverse else (ancestor.frame - order[0])
            frontier = position if frontier is None else min(frontier, position)
        return frontier

    def _emit(
        self, state: dict[str, Any], obj_ids: list[int], heads: list[Node | None], frames: list[int], reverse: bool
    ) -> Iterator[tuple[int, list[int], torch.Tensor, list[float]]]:
        """Yield ``frames`` (now final) along the pathway ending at each object's ``heads`` node, store
        them as sam2 outputs, and cut them from their parents (only pathway memories still hold them).

        An object whose pathway does not reach back to a frame (its first prompt comes later) is left
        out of that frame's output."""
        device = state["device"]
        per_object = [{} if head is None else _nodes_on(head, frames) for head in heads]
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
        for nodes_by_frame in per_object:
            for node in nodes_by_frame.values():
                node.parent = None

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

    def _step(
        self, state: dict[str, Any], frame_idx: int, slots: list[list[Node] | None], reverse: bool
    ) -> list[list[Node] | None]:
        """Advance every object's pathways by one frame."""
        num_pathways = self.tree.num_pathways
        features = None
        new_slots: list[list[Node] | None] = []
        expansions: list[list[_Expansion]] = []
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

    def _expand_all(
        self, state: dict[str, Any], nodes: list[Node], frame_idx: int, cond_outputs: dict[int, Any],
        features: tuple, reverse: bool,
    ) -> list[_Expansion]:
        """3 candidates for each of an object's distinct pathway nodes, one by one or as a batch."""
        if self._memory_capture is None or len(nodes) == 1:
            return [self._expand(state, node, frame_idx, cond_outputs, features, reverse) for node in nodes]
        return self._expand_batch(state, nodes, frame_idx, cond_outputs, features, reverse)

    def _pathway_memory(
        self, state: dict[str, Any], node: Node, frame_idx: int, cond_outputs: dict[int, Any], features: tuple,
        reverse: bool,
    ) -> tuple[int, dict[str, dict[int, Any]], torch.Tensor | None]:
        """``(frame index to pass, memory view, key weights [N] or None)`` of one pathway node."""
        _, _, vision_feats, _, feat_sizes = features
        num_frames = state["num_frames"]
        key_frame, view, key_scores = memory_view(
            node.memory(self.history_limit), frame_idx, reverse, cond_outputs, rekey=self.filters_memory,
            drop_oldest_pointer=self.filters_memory and self.tree.official_compat, num_frames=num_frames,
        )
        weights = None
        if self._key_hook is not None:
            frame_scores, pointer_scores, prompt_pointers = memory_scores(
                self.model, key_frame, view, key_scores, num_frames, reverse, self.tree.prompt_frame_rank_score
            )
            height, width = feat_sizes[-1]
            only_prompt_pointers = self.tree.official_compat and len(pointer_scores) == prompt_pointers
            weights = key_token_weights(frame_scores, pointer_scores, height * width, self.tokens_per_pointer,
                                        self.tree.key_weight_range, bf16_pointer_levels=only_prompt_pointers)
            if weights is not None:
                weights = weights.to(vision_feats[-1].device, non_blocking=True)
        return key_frame, view, weights

    def _key_weights(self, weights: torch.Tensor | None) -> AbstractContextManager[None]:
        return nullcontext() if self._key_hook is None else self._key_hook.weights(weights)

    def _expand(
        self, state: dict[str, Any], node: Node, frame_idx: int, cond_outputs: dict[int, Any], features: tuple,
        reverse: bool,
    ) -> _Expansion:
        """Memory attention + SAM heads for one pathway node: 3 candidates (upstream ``_track_step``)."""
        _, _, vision_feats, vision_pos_embeds, feat_sizes = features
        key_frame, view, weights = self._pathway_memory(state, node, frame_idx, cond_outputs, features, reverse)
        self._tokens = None
        with self._key_weights(weights):
            _, sam_outputs, _, _ = self.model._track_step(
                key_frame, False, vision_feats, vision_pos_embeds, feat_sizes, None, None, view, state["num_frames"],
                reverse, None,
            )
        return _Expansion(node, sam_outputs, self._tokens)

    def _expand_batch(
        self, state: dict[str, Any], nodes: list[Node], frame_idx: int, cond_outputs: dict[int, Any],
        features: tuple, reverse: bool,
    ) -> list[_Expansion]:
        """``_expand`` for several nodes at once: upstream assembles each pathway's memory; pathways with
        the same memory layout (token and pointer counts) share one memory-attention call, and all of them
        one SAM-heads call."""
        model = self.model
        _, _, vision_feats, vision_pos_embeds, feat_sizes = features
        groups: dict[tuple[int, int, bool], list[tuple[int, dict[str, Any], torch.Tensor | None]]] = {}
        for index, node in enumerate(nodes):
            key_frame, view, weights = self._pathway_memory(state, node, frame_idx, cond_outputs, features, reverse)
            inputs = self._memory_capture.capture(
                model._prepare_memory_conditioned_features, key_frame, False, vision_feats[-1:],
                vision_pos_embeds[-1:], feat_sizes[-1:], view, state["num_frames"], reverse,
            )
            layout = (inputs["memory"].shape[0], inputs["num_obj_ptr_tokens"], weights is None)
            groups.setdefault(layout, []).append((index, inputs, weights))
        height, width = feat_sizes[-1]
        fused_rows: list[torch.Tensor | None] = [None] * len(nodes)
        for (_, pointer_tokens, unweighted), members in groups.items():
            count = len(members)
            memory = torch.cat([inputs["memory"] for _, inputs, _ in members], dim=1)  # [N, count, C_mem]
            memory_pos = torch.cat([inputs["memory_pos"] for _, inputs, _ in members], dim=1)
            weights = None if unweighted else torch.stack([weights for _, _, weights in members])  # [count, N]
            with self._key_weights(weights):
                fused = model.memory_attention(
                    curr=[vision_feats[-1].expand(-1, count, -1)], curr_pos=[vision_pos_embeds[-1].expand(-1, count, -1)],
                    memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=pointer_tokens,
                )  # [HW, count, C]
            fused = fused.permute(1, 2, 0).view(count, model.hidden_dim, height, width)
            for row, (index, _, _) in enumerate(members):
                fused_rows[index] = fused[row:row + 1]
        batch = len(nodes)
        high_res_features = [
            x.permute(1, 2, 0).view(x.size(1), x.size(2), *size).expand(batch, -1, -1, -1)
            for x, size in zip(vision_feats[:-1], feat_sizes[:-1])
        ] or None
        self._tokens = None
        sam_outputs = model._forward_sam_heads(
            backbone_features=torch.cat(fused_rows), point_inputs=None, mask_inputs=None,
            high_res_features=high_res_features, multimask_output=model._use_multimask(False, None),
        )
        return [
            _Expansion(node, tuple(output[row:row + 1] for output in sam_outputs), self._tokens[row:row + 1])
            for row, node in enumerate(nodes)
        ]

    @staticmethod
    def _fetch_scores(expansions: list[_Expansion]) -> None:
        """Bring every candidate IoU and object score of the frame to the host in one transfer."""
        if not expansions:
            return
        rows = [torch.cat([e.sam_outputs[2].reshape(-1).float(), e.sam_outputs[6].reshape(-1).float()])
                for e in expansions]
        values = torch.cat(rows).tolist()
        offset = 0
        for expansion, row in zip(expansions, rows):
            count = row.numel()
            expansion.ious = values[offset:offset + count - 1]
            expansion.object_score = values[offset + count - 1]
            offset += count

    def _select(
        self, state: dict[str, Any], beam: list[Node], expansions: list[_Expansion], frame_idx: int, features: tuple
    ) -> list[Node]:
        """Choose the surviving candidates and build their nodes (each distinct child encoded once)."""
        tree = self.tree
        by_node = {id(expansion.node): expansion for expansion in expansions}
        if beam[0].starts_pathways:
            best = greedy_candidate(expansions[0].ious)
            choices = [Choice(slot, best, 0.0) for slot in range(tree.num_pathways)]
        else:
            slot_expansions = [by_node[id(node)] for node in beam]
            choices = select_pathways(
                [node.score for node in beam],
                [expansion.ious for expansion in slot_expansions],
                [expansion.object_score for expansion in slot_expansions],
                num_pathways=tree.num_pathways,
                uncertainty_threshold=tree.uncertainty_threshold,
                iou_round_decimals=tree.iou_round_decimals,
                log_epsilon=tree.log_epsilon,
            )
        distinct: dict[tuple[int, int], Choice] = {}
        for choice in choices:
            distinct.setdefault((id(beam[choice.slot]), choice.candidate), choice)
        chosen = [(by_node[id(beam[choice.slot])], choice) for choice in distinct.values()]
        memories = self._encode(chosen, features)
        children = {
            key: self._child(state, expansion, choice, frame_idx, memory)
            for key, (expansion, choice), memory in zip(distinct, chosen, memories)
        }
        return [children[(id(beam[choice.slot]), choice.candidate)] for choice in choices]

    def _encode(
        self, chosen: list[tuple[_Expansion, Choice]], features: tuple
    ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Memory encoding ``(maskmem_features, maskmem_pos_enc)`` of each distinct surviving candidate,
        one by one or as one batch."""
        model = self.model
        _, _, vision_feats, _, feat_sizes = features
        masks = [_candidate_masks(expansion, choice.candidate)[1] for expansion, choice in chosen]
        scores = [expansion.sam_outputs[6] for expansion, _ in chosen]
        if not self._batch_memory_encoder or len(chosen) == 1:
            return [
                model._encode_new_memory(
                    current_vision_feats=vision_feats, feat_sizes=feat_sizes, pred_masks_high_res=mask,
                    object_score_logits=score, is_mask_from_pts=False,
                )
                for mask, score in zip(masks, scores)
            ]
        batch = len(chosen)
        features_batch, position_batch = model._encode_new_memory(
            current_vision_feats=[vision_feats[-1].expand(-1, batch, -1)], feat_sizes=feat_sizes,
            pred_masks_high_res=torch.cat(masks), object_score_logits=torch.cat(scores), is_mask_from_pts=False,
        )
        return [
            (features_batch[row:row + 1], [position[row:row + 1] for position in position_batch])
            for row in range(batch)
        ]

    def _child(
        self, state: dict[str, Any], expansion: _Expansion, choice: Choice, frame_idx: int,
        memory: tuple[torch.Tensor, list[torch.Tensor]],
    ) -> Node:
        """The node of one surviving candidate: its memory encoding, pointer and mask (sam2 layout)."""
        model = self.model
        maskmem_features, maskmem_pos_enc = memory
        obj_ptr, object_score_logits = expansion.sam_outputs[5], expansion.sam_outputs[6]
        index = choice.candidate
        is_best = index == greedy_candidate(expansion.ious)
        low_res, _ = _candidate_masks(expansion, index)
        storage = state["storage_device"]
        if self._fill_holes:
            from sam2.utils.misc import fill_holes_in_mask_scores

            low_res = fill_holes_in_mask_scores(low_res, model.fill_hole_area)
        iou = expansion.ious[index]
        object_score = expansion.object_score
        payload = {
            "maskmem_features": _compact(maskmem_features.to(torch.bfloat16).to(storage, non_blocking=True)),
            "maskmem_pos_enc": model._get_maskmem_pos_enc(state, {"maskmem_pos_enc": maskmem_pos_enc}),
            "pred_masks": _compact(low_res.to(storage, non_blocking=True)),
            "obj_ptr": _compact(self._pointer(expansion, index, is_best, obj_ptr, object_score_logits)),
            "object_score_logits": _compact(object_score_logits),
            "samkit_iou": iou,
            "samkit_object_score": object_score,
        }
        parent = expansion.node
        return Node(
            frame_idx, parent, TRACKED, candidate=index, score=choice.score, iou=iou, object_score=object_score,
            valid=self.tree.is_valid_memory(iou, object_score) if self.filters_memory else True,
            history=parent.child_history(self.history_limit), payload=payload,
        )

    def _pointer(self, expansion: _Expansion, index: int, is_best: bool, obj_ptr: torch.Tensor,
                 object_score_logits: torch.Tensor) -> torch.Tensor:
        """Object pointer of candidate ``index``: upstream's own for the best candidate; otherwise the
        projected output token with upstream's no-object mixing. ``official_compat`` projects all three
        tokens at once with hard mixing, as the official code (differs by ~1e-7)."""
        model = self.model
        if self.tree.official_compat and not expansion.node.starts_pathways:
            pointers = model.obj_ptr_proj(expansion.tokens)  # [B, 3, C]
            appearing = (object_score_logits > 0).float()[:, None]
            pointers = appearing * pointers + (1 - appearing) * model.no_obj_ptr
            return pointers[:, index]
        if is_best:
            return obj_ptr
        pointer = model.obj_ptr_proj(expansion.tokens[:, index])
        if model.pred_obj_scores:
            if model.soft_no_obj_ptr:
                appearing = object_score_logits.sigmoid()
            else:
                appearing = (object_score_logits > 0).float()
            if model.fixed_no_obj_ptr:
                pointer = appearing * pointer
            pointer = pointer + (1 - appearing) * model.no_obj_ptr
        return pointer


def _candidate_masks(expansion: _Expansion, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low_res [1,1,h,w], high_res [1,1,H,W])`` mask logits of candidate ``index``; upstream's own best
    masks for the best candidate (so one pathway stays bit-identical to SAM 2)."""
    low_res_multimasks, high_res_multimasks, _, low_res_masks, high_res_masks, _, _ = expansion.sam_outputs
    if index == greedy_candidate(expansion.ious):
        return low_res_masks, high_res_masks
    return low_res_multimasks[:, index:index + 1], high_res_multimasks[:, index:index + 1]


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself, or a copy when it is a view into a bigger tensor (a slice of a candidate or
    pathway batch), so stored memories do not keep whole batches alive."""
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
        return tensor.clone()
    return tensor


def _nodes_on(head: Node, frames: list[int]) -> dict[int, Node]:
    """``{frame: node}`` for those of ``frames`` the pathway ending at ``head`` passes through (an object
    whose first prompt comes later in the propagation has no node on the earlier frames)."""
    wanted = set(frames)
    found: dict[int, Node] = {}
    node = head
    while node is not None and len(found) < len(wanted):
        if node.frame in wanted and node.frame not in found:
            found[node.frame] = node
        node = node.parent
    return found


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exponential = math.exp(value)
    return exponential / (1.0 + exponential)
