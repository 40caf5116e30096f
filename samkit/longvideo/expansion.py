"""Expansion step of ``TreeTracker``: memory attention + SAM heads for each distinct pathway node of an
object on a frame (3 candidate masks each), with the pathway's own memory and key weights."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from samkit.longvideo.memory import key_token_weights, memory_scores, memory_view
from samkit.longvideo.tree import Node


class Expansion:
    """One distinct pathway node of one object run through memory attention + SAM heads on a frame."""

    __slots__ = ("ious", "node", "object_score", "sam_outputs", "tokens")

    def __init__(self, node: Node, sam_outputs: tuple, tokens: torch.Tensor | None) -> None:
        self.node = node
        self.sam_outputs = sam_outputs
        self.tokens = tokens
        self.ious: list[float] = []
        self.object_score = 0.0


class ExpansionMixin:
    """``_expand_all`` (one by one or batched) and the per-frame score transfer of ``TreeTracker``."""

    model: Any
    tree: Any
    history_limit: int
    filters_memory: bool
    tokens_per_pointer: int

    def _expand_all(
        self, state: dict[str, Any], nodes: list[Node], frame_idx: int, cond_outputs: dict[int, Any],
        features: tuple, reverse: bool,
    ) -> list[Expansion]:
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

    def _with_tokens(self, function: Any, *args: Any, **kwargs: Any) -> tuple[Any, torch.Tensor | None]:
        """``(function(...), the mask decoder's output tokens)``; tokens only when several pathways need them."""
        if self._token_capture is None:
            return function(*args, **kwargs), None
        return self._token_capture.run(function, *args, **kwargs)

    def _expand(
        self, state: dict[str, Any], node: Node, frame_idx: int, cond_outputs: dict[int, Any], features: tuple,
        reverse: bool,
    ) -> Expansion:
        """Memory attention + SAM heads for one pathway node: 3 candidates (upstream ``_track_step``)."""
        _, _, vision_feats, vision_pos_embeds, feat_sizes = features
        key_frame, view, weights = self._pathway_memory(state, node, frame_idx, cond_outputs, features, reverse)
        with self._key_weights(weights):
            (_, sam_outputs, _, _), tokens = self._with_tokens(
                self.model._track_step, key_frame, False, vision_feats, vision_pos_embeds, feat_sizes, None, None,
                view, state["num_frames"], reverse, None,
            )
        return Expansion(node, sam_outputs, tokens)

    def _expand_batch(
        self, state: dict[str, Any], nodes: list[Node], frame_idx: int, cond_outputs: dict[int, Any],
        features: tuple, reverse: bool,
    ) -> list[Expansion]:
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
        sam_outputs, tokens = self._with_tokens(
            model._forward_sam_heads, backbone_features=torch.cat(fused_rows), point_inputs=None, mask_inputs=None,
            high_res_features=high_res_features, multimask_output=model._use_multimask(False, None),
        )
        return [
            Expansion(node, tuple(output[row:row + 1] for output in sam_outputs), tokens[row:row + 1])
            for row, node in enumerate(nodes)
        ]

    @staticmethod
    def _fetch_scores(expansions: list[Expansion]) -> None:
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
