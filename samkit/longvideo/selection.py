"""Selection step of ``TreeTracker``: the tree picks the surviving candidates of an object on a frame, and
each distinct survivor is encoded into memory once and becomes a pathway node (sam2's output layout)."""

from __future__ import annotations

from typing import Any

import torch

from samkit.longvideo.expansion import Expansion
from samkit.longvideo.tree import TRACKED, Choice, Node, greedy_candidate, select_pathways


class SelectionMixin:
    """``_select`` and the node construction of ``TreeTracker``."""

    model: Any
    tree: Any
    history_limit: int
    filters_memory: bool

    def _select(
        self, state: dict[str, Any], beam: list[Node], expansions: list[Expansion], frame_idx: int, features: tuple
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
        self, chosen: list[tuple[Expansion, Choice]], features: tuple
    ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Memory encoding ``(maskmem_features, maskmem_pos_enc)`` of each distinct surviving candidate,
        one by one or as one batch."""
        model = self.model
        _, _, vision_feats, _, feat_sizes = features
        masks = [candidate_masks(expansion, choice.candidate)[1] for expansion, choice in chosen]
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
        self, state: dict[str, Any], expansion: Expansion, choice: Choice, frame_idx: int,
        memory: tuple[torch.Tensor, list[torch.Tensor]],
    ) -> Node:
        """The node of one surviving candidate: its memory encoding, pointer and mask (sam2 layout)."""
        model = self.model
        maskmem_features, maskmem_pos_enc = memory
        obj_ptr, object_score_logits = expansion.sam_outputs[5], expansion.sam_outputs[6]
        index = choice.candidate
        is_best = index == greedy_candidate(expansion.ious)
        low_res, _ = candidate_masks(expansion, index)
        storage = state["storage_device"]
        if self._fill_holes:
            from sam2.utils.misc import fill_holes_in_mask_scores

            low_res = fill_holes_in_mask_scores(low_res, model.fill_hole_area)
        iou = expansion.ious[index]
        object_score = expansion.object_score
        payload = {
            "maskmem_features": compact(maskmem_features.to(torch.bfloat16).to(storage, non_blocking=True)),
            "maskmem_pos_enc": model._get_maskmem_pos_enc(state, {"maskmem_pos_enc": maskmem_pos_enc}),
            "pred_masks": compact(low_res.to(storage, non_blocking=True)),
            "obj_ptr": compact(self._pointer(expansion, index, is_best, obj_ptr, object_score_logits)),
            "object_score_logits": compact(object_score_logits),
            "samkit_iou": iou,
            "samkit_object_score": object_score,
        }
        parent = expansion.node
        return Node(
            frame_idx, parent, TRACKED, candidate=index, score=choice.score, iou=iou, object_score=object_score,
            valid=self.tree.is_valid_memory(iou, object_score) if self.filters_memory else True,
            history=parent.child_history(self.history_limit), payload=payload,
        )

    def _pointer(self, expansion: Expansion, index: int, is_best: bool, obj_ptr: torch.Tensor,
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


def candidate_masks(expansion: Expansion, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low_res [1,1,h,w], high_res [1,1,H,W])`` mask logits of candidate ``index``; upstream's own best
    masks for the best candidate (so one pathway stays bit-identical to SAM 2)."""
    low_res_multimasks, high_res_multimasks, _, low_res_masks, high_res_masks, _, _ = expansion.sam_outputs
    if index == greedy_candidate(expansion.ious):
        return low_res_masks, high_res_masks
    return low_res_multimasks[:, index:index + 1], high_res_multimasks[:, index:index + 1]


def compact(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself, or a copy when it is a view into a bigger tensor (a slice of a candidate or
    pathway batch), so stored memories do not keep whole batches alive."""
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
        return tensor.clone()
    return tensor
