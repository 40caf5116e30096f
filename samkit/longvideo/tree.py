"""The SAM2Long memory tree as pure logic: nodes, candidate scoring, pathway selection, commit.

No model code here. A *node* is one tracked frame of one pathway (the mask candidate it chose, its
cumulative score, its predicted IoU and object score); its *payload* is whatever the tracker stores
for it (memory features, pointer, mask). A pathway is a chain of nodes linked by ``parent``; P
*slots* hold the live pathways of one object, several slots may share a node (collapsed pathways are
computed once).

Per frame (``select_pathways``): every slot's node expands into its candidates; candidate ``j`` of
slot ``p`` scores ``S_p + log(IoU_pj + eps)``; the 3P candidates are sorted by score (stable, so ties
keep slot-major order). If some pathway's ``|object score|`` exceeds the uncertainty threshold the
top P survive (duplicates allowed); otherwise survivors must have distinct ``round(+-IoU, 2)`` (sign
= object present), and if fewer than P are distinct every slot not yet represented adds its own best
candidate. The best candidate always lands in slot 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

ROOT = "root"
"""Where a pathway starts when no prompt frame precedes it (its memory is the prompt frames only)."""
PROMPT = "prompt"
"""A prompt (conditioning) frame: every pathway of the object passes through it."""
TRACKED = "tracked"
"""A frame predicted from memory: one candidate mask of one pathway."""


class Node:
    """One frame of one pathway; ``history`` holds the valid tracked ancestors (oldest first)."""

    __slots__ = (
        "__weakref__",
        "candidate",
        "frame",
        "history",
        "iou",
        "kind",
        "object_score",
        "parent",
        "payload",
        "score",
        "valid",
    )
    alive = 0
    """How many nodes exist right now (tests use it to check that unreachable nodes are freed)."""

    def __init__(
        self,
        frame: int | None,
        parent: Node | None,
        kind: str,
        *,
        candidate: int = 0,
        score: float = 0.0,
        iou: float = 1.0,
        object_score: float = 0.0,
        valid: bool = False,
        history: tuple[Node, ...] = (),
        payload: Any = None,
    ) -> None:
        self.frame = frame
        self.parent = parent
        self.kind = kind
        self.candidate = candidate
        self.score = score
        self.iou = iou
        self.object_score = object_score
        self.valid = valid
        self.history = history
        self.payload = payload
        Node.alive += 1

    def __del__(self) -> None:
        Node.alive -= 1

    def __repr__(self) -> str:
        return f"Node({self.kind}, frame={self.frame}, candidate={self.candidate}, score={self.score:.4f})"

    @property
    def starts_pathways(self) -> bool:
        """Children of prompt / root nodes are chosen greedily (best IoU) with score 0 (the warm-up frame)."""
        return self.kind != TRACKED

    def child_history(self, limit: int) -> tuple[Node, ...]:
        """The ``history`` of this node's children: its own history plus itself if it is valid memory."""
        if self.kind == TRACKED and self.valid:
            return (self.history + (self,))[-limit:]
        return self.history

    def memory(self, limit: int) -> tuple[Node, ...]:
        """The past frames a child of this node remembers, oldest first: the last ``limit`` valid tracked
        frames, plus this node itself (the previous frame) when it is tracked but not valid."""
        remembered = self.child_history(limit)
        if self.kind == TRACKED and not self.valid:
            remembered = remembered + (self,)
        return remembered


@dataclass(frozen=True)
class Choice:
    """A surviving candidate: candidate ``candidate`` of the pathway in slot ``slot``, new score ``score``."""

    slot: int
    candidate: int
    score: float


def candidate_score(parent_score: float, iou: float, log_epsilon: float) -> float:
    """Cumulative pathway score after choosing a mask with predicted IoU ``iou``."""
    return parent_score + math.log(iou + log_epsilon)


def greedy_candidate(ious: Sequence[float]) -> int:
    """Index of the highest predicted IoU (first on ties, as ``torch.argmax``)."""
    best = 0
    for index, iou in enumerate(ious):
        if iou > ious[best]:
            best = index
    return best


def select_pathways(
    parent_scores: Sequence[float],
    ious: Sequence[Sequence[float]],
    object_scores: Sequence[float],
    *,
    num_pathways: int,
    uncertainty_threshold: float,
    iou_round_decimals: int = 2,
    log_epsilon: float = 1e-5,
) -> list[Choice]:
    """Pick ``num_pathways`` survivors among every slot's candidates (see module docstring).

    ``parent_scores[p]``, ``ious[p][j]`` and ``object_scores[p]`` describe slot ``p`` (slots sharing a
    node repeat its values). Returns the survivors in slot order; slot 0 holds the best candidate.
    """
    if not (len(parent_scores) == len(ious) == len(object_scores) == num_pathways):
        raise ValueError(
            f"select_pathways needs one entry per slot ({num_pathways}), got {len(parent_scores)} scores, "
            f"{len(ious)} IoU rows and {len(object_scores)} object scores"
        )
    candidates = []
    for slot, (parent_score, slot_ious, object_score) in enumerate(zip(parent_scores, ious, object_scores)):
        for index, iou in enumerate(slot_ious):
            signed_iou = iou if object_score > 0 else -iou
            candidates.append((slot, index, candidate_score(parent_score, iou, log_epsilon), signed_iou))
    ranked = sorted(candidates, key=lambda candidate: candidate[2], reverse=True)
    certain = max(abs(score) for score in object_scores) > uncertainty_threshold
    if certain:
        kept = ranked[:num_pathways]
    else:
        kept, seen = [], set()
        for candidate in ranked:
            rounded = round(candidate[3], iou_round_decimals)
            if rounded not in seen:
                seen.add(rounded)
                kept.append(candidate)
                if len(kept) == num_pathways:
                    break
        if len(kept) < num_pathways:
            represented = {candidate[0] for candidate in kept}
            for slot in range(num_pathways):
                if len(kept) == num_pathways:
                    break
                if slot not in represented:
                    kept.append(next(candidate for candidate in ranked if candidate[0] == slot))
    return [Choice(slot, index, score) for slot, index, score, _ in kept]


def unique_nodes(nodes: Iterable[Node]) -> list[Node]:
    """The distinct nodes among ``nodes``, in order of first appearance."""
    seen: dict[int, Node] = {}
    for node in nodes:
        seen.setdefault(id(node), node)
    return list(seen.values())


def common_ancestor(nodes: Sequence[Node]) -> Node | None:
    """The latest node every one of ``nodes`` (all on the same frame) passes through, or ``None``."""
    current = unique_nodes(nodes)
    while len(current) > 1:
        if any(node.parent is None for node in current):
            return None
        current = unique_nodes(node.parent for node in current)
    return current[0] if current else None


def chain(node: Node, stop_frame: int | None, reverse: bool = False) -> list[Node]:
    """The nodes from just after ``stop_frame`` up to ``node`` along its parent links, oldest first.

    ``stop_frame=None`` walks to the start of the stored chain. Root nodes are skipped.
    """
    nodes = []
    while node is not None and node.frame is not None:
        if stop_frame is not None and (node.frame <= stop_frame if not reverse else node.frame >= stop_frame):
            break
        nodes.append(node)
        node = node.parent
    nodes.reverse()
    return nodes


Slots = list[list[Node] | None]
"""Per object: the node of each pathway slot on the current frame, or ``None`` while it is not tracked yet."""


def merge_position(beam: Sequence[Node], first_frame: int, reverse: bool) -> int | None:
    """Position, in processing order from ``first_frame``, of the latest frame all of ``beam``'s pathways
    share (negative when it lies before ``first_frame``), or ``None`` when they share no frame yet."""
    ancestor = common_ancestor(beam)
    if ancestor is None or ancestor.frame is None:
        return None
    return first_frame - ancestor.frame if reverse else ancestor.frame - first_frame


def frontier(slots: Slots, first_frame: int, reverse: bool, current: int) -> int | None:
    """Position of the latest frame every pathway of every tracked object has in common: the frames up to it
    are final (equal to backtracking the best pathway at the end of the video). ``current`` when no object
    is tracked; ``None`` when some object's pathways share no frame yet."""
    positions = [merge_position(beam, first_frame, reverse) for beam in slots if beam is not None]
    if not positions:
        return current
    if any(position is None for position in positions):
        return None
    return min(positions)


def bound_pending(slots: Slots, first_frame: int, reverse: bool, current: int, max_pending: int | None) -> Slots:
    """``slots`` where every object whose pathways have not shared a frame for ``max_pending`` frames (up to
    ``current``) keeps only its best pathway (slot 0) in every slot; unchanged when ``max_pending`` is None."""
    if max_pending is None:
        return list(slots)
    bounded: Slots = []
    for beam in slots:
        if beam is not None:
            position = merge_position(beam, first_frame, reverse)
            waiting = current + 1 if position is None else current - position
            if waiting >= max_pending:
                beam = [beam[0]] * len(beam)
        bounded.append(beam)
    return bounded


def nodes_on(head: Node, frames: Iterable[int]) -> dict[int, Node]:
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


def release(committed: Iterable[dict[int, Node]]) -> None:
    """Cut committed nodes from their parents: only pathway memories (``history``) still reference them."""
    for nodes_by_frame in committed:
        for node in nodes_by_frame.values():
            node.parent = None
