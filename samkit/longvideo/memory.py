"""Per-pathway memory for the unmodified ``sam2`` 1.1.0 memory attention.

A pathway's memory is handed to ``SAM2Base._prepare_memory_conditioned_features`` as a *view*: an
``output_dict`` whose ``non_cond_frame_outputs`` holds only that pathway's remembered frames. With
memory filtering the remembered frames are *re-keyed* to ``t-1, t-2, ...`` (``t+1, ...`` in reverse)
by rank, so upstream's fixed-offset window (6 spatial frames, 15 pointers) becomes SAM2Long's
rank-based selection; without filtering they keep their real frame indices, which is SAM 2 itself.

Key weighting (SAM2Long's rank-based modulation) multiplies the cross-attention key input of every
memory token by a per-frame / per-pointer weight: ``key_token_weights`` computes the weights, and
``hooks.KeyWeightHook`` applies them.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from samkit.longvideo.tree import Node

if TYPE_CHECKING:
    import torch

UNTRACKED, FORWARD, BACKWARD = 0, 1, 2


def memory_view(
    nodes: Sequence[Node],
    frame_idx: int,
    reverse: bool,
    cond_outputs: dict[int, Any],
    *,
    rekey: bool,
    drop_oldest_pointer: bool,
    num_frames: int,
) -> tuple[int, dict[str, dict[int, Any]], dict[int, float]]:
    """The ``(frame index to pass, output_dict view, {view key: object score})`` for one pathway.

    ``nodes`` are the remembered frames, oldest first. ``rekey`` places the k-th most recent at
    ``t -+ k``. ``drop_oldest_pointer`` (official quirk) shifts all keys so that the oldest remembered
    frame falls just outside upstream's pointer range (key -1, or ``num_frames`` in reverse) while
    staying in its spatial window: it then gives ``len(nodes) - 1`` pointers, as the official code.
    Relative distances to prompt frames are preserved, so prompt-pointer positions stay exact.
    """
    step = 1 if reverse else -1
    if not rekey:
        view = {node.frame: node.payload for node in nodes}
        scores = {node.frame: node.object_score for node in nodes}
        return frame_idx, {"cond_frame_outputs": cond_outputs, "non_cond_frame_outputs": view}, scores
    current = frame_idx
    if drop_oldest_pointer and nodes:
        current = num_frames - len(nodes) if reverse else len(nodes) - 1
    shift = current - frame_idx
    view, scores = {}, {}
    for rank, node in enumerate(reversed(nodes), start=1):
        key = current + step * rank
        view[key] = node.payload
        scores[key] = node.object_score
    if shift:
        cond_outputs = {frame + shift: out for frame, out in cond_outputs.items()}
    return current, {"cond_frame_outputs": cond_outputs, "non_cond_frame_outputs": view}, scores


def memory_scores(
    model: Any,
    frame_idx: int,
    output_dict: dict[str, dict[int, Any]],
    key_scores: dict[int, float],
    num_frames: int,
    reverse: bool,
    prompt_score: float,
) -> tuple[list[float], list[float], int]:
    """Rank scores of the memory frames and object pointers upstream will attend to, in token order,
    and how many of the pointers (the leading ones) belong to prompt frames.

    Mirrors the selection in ``SAM2Base._prepare_memory_conditioned_features`` (sam2 1.1.0): the
    selected prompt frames, then the ``num_maskmem - 1`` window, then prompt pointers and up to
    ``max_obj_ptrs_in_encoder - 1`` past pointers. Prompt frames score ``prompt_score``.
    """
    from sam2.modeling.sam2_utils import select_closest_cond_frames

    cond_outputs = output_dict["cond_frame_outputs"]
    non_cond = output_dict["non_cond_frame_outputs"]
    selected, unselected = select_closest_cond_frames(frame_idx, cond_outputs, model.max_cond_frames_in_attn)

    def score_of(key: int) -> float | None:
        if key in non_cond:
            return key_scores[key]
        return prompt_score if key in unselected else None

    frame_scores = [prompt_score] * len(selected)
    stride = model.memory_temporal_stride_for_eval
    for t_pos in range(1, model.num_maskmem):
        t_rel = model.num_maskmem - t_pos
        if t_rel == 1:
            key = frame_idx + t_rel if reverse else frame_idx - t_rel
        elif not reverse:
            key = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            key = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        score = score_of(key)
        if score is not None:
            frame_scores.append(score)
    pointer_scores: list[float] = []
    prompt_pointer_count = 0
    if model.use_obj_ptrs_in_encoder:
        max_pointers = min(num_frames, model.max_obj_ptrs_in_encoder)
        if model.only_obj_ptrs_in_the_past_for_eval:
            prompt_pointers = [t for t in selected if (t >= frame_idx if reverse else t <= frame_idx)]
        else:
            prompt_pointers = list(selected)
        pointer_scores = [prompt_score] * len(prompt_pointers)
        prompt_pointer_count = len(prompt_pointers)
        for t_diff in range(1, max_pointers):
            key = frame_idx + t_diff if reverse else frame_idx - t_diff
            if key < 0 or key >= num_frames:
                break
            score = score_of(key)
            if score is not None:
                pointer_scores.append(score)
    return frame_scores, pointer_scores, prompt_pointer_count


def rank_weights(scores: Sequence[float], low: float, high: float, bf16_levels: bool = False) -> torch.Tensor:
    """float32 weights ``linspace(low, high, n)`` given by ascending rank of ``scores`` (ties: earlier first).

    One score gets ``low`` (``torch.linspace`` with one step), as in the official code. ``bf16_levels``
    rounds the levels through bfloat16: the official code does so when every score is a prompt
    frame's (its bf16 constant then fixes the dtype of the score tensor).
    """
    import torch

    levels = torch.linspace(low, high, len(scores), dtype=torch.float32)
    if bf16_levels:
        levels = levels.to(torch.bfloat16).to(torch.float32)
    order = sorted(range(len(scores)), key=lambda index: scores[index])
    weights = torch.empty(len(scores), dtype=torch.float32)
    weights[torch.tensor(order, dtype=torch.long)] = levels
    return weights


def key_token_weights(
    frame_scores: Sequence[float],
    pointer_scores: Sequence[float],
    tokens_per_frame: int,
    tokens_per_pointer: int,
    weight_range: tuple[float, float],
    bf16_pointer_levels: bool = False,
) -> torch.Tensor | None:
    """Per-memory-token key weights [N] (frame tokens first, then pointer tokens), or ``None`` when only
    one frame is in memory (the official code skips the weighting then). ``bf16_pointer_levels``: see
    ``rank_weights``."""
    import torch

    if len(frame_scores) <= 1:
        return None
    low, high = weight_range
    parts = [rank_weights(frame_scores, low, high).repeat_interleave(tokens_per_frame)]
    if pointer_scores:
        pointer_weights = rank_weights(pointer_scores, low, high, bf16_levels=bf16_pointer_levels)
        parts.append(pointer_weights.repeat_interleave(tokens_per_pointer))
    return torch.cat(parts)


class TrackedFrames(MutableMapping):
    """``frames_tracked_per_obj[obj]`` of sam2 1.1.0 in one byte per frame instead of a dict per frame.

    Maps a frame index to ``{"reverse": bool}`` like upstream, so ``add_new_points_or_box`` /
    ``add_new_mask`` work unchanged, while its size stays fixed for the whole video.
    """

    def __init__(self, num_frames: int) -> None:
        self._state = bytearray(num_frames)

    def __getitem__(self, frame_idx: int) -> dict[str, bool]:
        state = self._lookup(frame_idx)
        if state == UNTRACKED:
            raise KeyError(frame_idx)
        return {"reverse": state == BACKWARD}

    def __setitem__(self, frame_idx: int, value: dict[str, bool]) -> None:
        self._state[frame_idx] = BACKWARD if value["reverse"] else FORWARD

    def __delitem__(self, frame_idx: int) -> None:
        if self._lookup(frame_idx) == UNTRACKED:
            raise KeyError(frame_idx)
        self._state[frame_idx] = UNTRACKED

    def __contains__(self, frame_idx: object) -> bool:
        return isinstance(frame_idx, int) and self._lookup(frame_idx) != UNTRACKED

    def __iter__(self) -> Iterator[int]:
        return (index for index, state in enumerate(self._state) if state != UNTRACKED)

    def __len__(self) -> int:
        return len(self._state) - self._state.count(UNTRACKED)

    def clear(self) -> None:
        self._state = bytearray(len(self._state))

    def _lookup(self, frame_idx: int) -> int:
        return self._state[frame_idx] if 0 <= frame_idx < len(self._state) else UNTRACKED
