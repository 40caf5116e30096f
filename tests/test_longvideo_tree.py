"""Pure memory-tree logic of samkit.longvideo against hand-worked examples (no model)."""

import gc
import math

import pytest

from samkit import InputError
from samkit.longvideo import TreeConfig
from samkit.longvideo.tree import (
    PROMPT,
    ROOT,
    TRACKED,
    Choice,
    Node,
    bound_pending,
    candidate_score,
    chain,
    common_ancestor,
    frontier,
    greedy_candidate,
    nodes_on,
    release,
    select_pathways,
)


def select(parent_scores, ious, object_scores, pathways=3, uncertainty=2.0):
    return select_pathways(parent_scores, ious, object_scores, num_pathways=pathways,
                           uncertainty_threshold=uncertainty)


def test_presets():
    paper = TreeConfig.paper()
    assert (paper.num_pathways, paper.iou_threshold, paper.uncertainty_threshold) == (3, 0.1, 2.0)
    assert paper.require_object_present and paper.key_weight_range == (0.95, 1.05)
    assert paper.prompt_frame_rank_score == 10.0 and paper.max_valid_scan == 15 and not paper.official_compat
    assert not paper.batch_pathways  # batching is not bit-identical, so opt-in
    assert TreeConfig.official() == paper.replace(official_compat=True)
    sam2 = TreeConfig.sam2()
    assert sam2.num_pathways == 1 and not sam2.filters_memory and not sam2.weights_keys


@pytest.mark.parametrize("changes", [{"num_pathways": 0}, {"num_pathways": -2}, {"key_weight_range": (1.1, 0.9)},
                                     {"uncertainty_threshold": -1.0}, {"max_valid_scan": 0},
                                     {"batch_pathways": "yes"}])
def test_invalid_config_is_input_error(changes):
    with pytest.raises(InputError, match=next(iter(changes))):
        TreeConfig(**changes)


def test_max_pending_frames_default_and_validation():
    assert TreeConfig.paper().max_pending_frames == TreeConfig.official().max_pending_frames >= 200
    assert TreeConfig(max_pending_frames=None).max_pending_frames is None  # no bound: always the end backtrack
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(InputError, match="max_pending_frames"):
            TreeConfig(max_pending_frames=bad)


def test_memory_validity_rule():
    paper = TreeConfig.paper()
    assert paper.is_valid_memory(0.5, 0.3)
    assert not paper.is_valid_memory(0.1, 5.0)  # IoU must be strictly above 0.1
    assert not paper.is_valid_memory(0.9, 0.0)  # object score must be > 0
    assert TreeConfig.sam2().is_valid_memory(0.0, -5.0)


def test_certain_frame_keeps_duplicates():
    # every pathway on the same node, confident object (|5| > 2): top-3 is the best mask three times
    choices = select([0.0] * 3, [[0.5, 0.9, 0.7]] * 3, [5.0] * 3)
    best = math.log(0.9 + 1e-5)
    assert choices == [Choice(0, 1, best), Choice(1, 1, best), Choice(2, 1, best)]


def test_uncertain_frame_keeps_distinct_rounded_ious():
    # scores by hand: (1,0) -0.2+ln(0.90001) = -0.30535, (0,1) -0.1+ln(0.80301) = -0.31940,
    # (0,0) -0.1+ln(0.80001) = -0.32313, (2,0) -0.3+ln(0.95001) = -0.35128, then the rest lower.
    # signed IoUs: slot 1 has a negative object score -> -0.90; (0,1) 0.803 and (0,0) 0.80 both round to 0.8.
    parents = [-0.1, -0.2, -0.3]
    ious = [[0.80, 0.803, 0.6], [0.9, 0.5, 0.3], [0.95, 0.2, 0.1]]
    choices = select(parents, ious, [1.0, -0.5, 1.5])
    assert [(c.slot, c.candidate) for c in choices] == [(1, 0), (0, 1), (2, 0)]
    assert choices[0].score == pytest.approx(-0.2 + math.log(0.90001), abs=1e-12)
    assert choices[1].score == pytest.approx(-0.1 + math.log(0.80301), abs=1e-12)
    # the same frame judged certain keeps the plain top 3 (including the duplicate rounded IoU)
    certain = select(parents, ious, [1.0, -0.5, 2.5])
    assert [(c.slot, c.candidate) for c in certain] == [(1, 0), (0, 1), (0, 0)]


def test_uncertainty_threshold_is_strict():
    # max |object score| == threshold counts as uncertain: distinct IoUs are enforced
    choices = select([0.0] * 3, [[0.5, 0.9, 0.7]] * 3, [2.0, 1.0, 0.5])
    assert [(c.slot, c.candidate) for c in choices] == [(0, 1), (0, 2), (0, 0)]
    # the sign of the object score makes IoUs distinct: slot 0 (absent object) -0.9 differs from slot 1's +0.9
    choices = select([0.0] * 3, [[0.5, 0.9, 0.7]] * 3, [-2.0, 1.0, 0.5])
    assert [(c.slot, c.candidate) for c in choices] == [(0, 1), (1, 1), (0, 2)]


def test_corner_case_fills_from_unrepresented_pathways():
    # collapsed pathways, IoUs 0.801 / 0.802 / 0.3 round to only two distinct values (0.8, 0.3):
    # keep (0,1) and (0,2), then slot 1 (not represented) adds its own best candidate (1,1)
    choices = select([0.0] * 3, [[0.801, 0.802, 0.3]] * 3, [0.5] * 3)
    assert [(c.slot, c.candidate) for c in choices] == [(0, 1), (0, 2), (1, 1)]
    assert choices[0].score == choices[2].score == pytest.approx(math.log(0.80201))


def test_ties_keep_slot_major_order_and_best_in_slot_zero():
    choices = select([-1.0, -1.0, -1.0], [[0.7, 0.7, 0.1], [0.7, 0.7, 0.1], [0.9, 0.1, 0.1]], [9.0] * 3)
    assert [(c.slot, c.candidate) for c in choices] == [(2, 0), (0, 0), (0, 1)]
    assert max(c.score for c in choices) == choices[0].score


def test_single_pathway_is_argmax_like_torch():
    assert greedy_candidate([0.2, 0.8, 0.8]) == 1
    for ious in ([0.3, 0.1, 0.2], [0.1, 0.2, 0.9], [0.5, 0.5, 0.5]):
        choice = select([0.0], [ious], [-3.0], pathways=1)[0]
        assert choice.candidate == greedy_candidate(ious) == ious.index(max(ious))
    assert candidate_score(-1.0, 0.5, 1e-5) == pytest.approx(-1.0 + math.log(0.50001))


def test_select_needs_one_entry_per_slot():
    with pytest.raises(ValueError, match="one entry per slot"):
        select([0.0, 0.0], [[0.5]] * 2, [1.0] * 2, pathways=3)


def build_chain(valid_flags, start_frame=0, limit=15):
    prompt = Node(start_frame, None, PROMPT)
    nodes = [prompt]
    for offset, valid in enumerate(valid_flags, start=1):
        parent = nodes[-1]
        nodes.append(Node(start_frame + offset, parent, TRACKED, valid=valid, history=parent.child_history(limit)))
    return nodes


def test_memory_keeps_valid_frames_and_always_the_previous_one():
    nodes = build_chain([True, False, True, False])  # frames 1..4 after the prompt at 0
    assert [n.frame for n in nodes[0].memory(15)] == []  # warm-up frame: prompt only
    assert [n.frame for n in nodes[2].memory(15)] == [1, 2]  # frame 2 invalid but previous -> kept
    assert [n.frame for n in nodes[4].memory(15)] == [1, 3, 4]
    assert nodes[0].starts_pathways and not nodes[1].starts_pathways


def test_memory_scan_limit_then_previous_frame():
    # 20 valid frames then an invalid one: the scan keeps the 15 latest valid (6..20) plus the invalid previous
    nodes = build_chain([True] * 20 + [False])
    assert [n.frame for n in nodes[-1].memory(15)] == list(range(6, 21)) + [21]
    assert [n.frame for n in nodes[-2].memory(15)] == list(range(6, 21))


def test_common_ancestor_and_chain():
    prompt = Node(0, None, PROMPT)
    a1 = Node(1, prompt, TRACKED)
    a2, b2 = Node(2, a1, TRACKED), Node(2, a1, TRACKED, candidate=1)
    a3, b3, c3 = Node(3, a2, TRACKED), Node(3, b2, TRACKED), Node(3, b2, TRACKED, candidate=2)
    assert common_ancestor([a3, b3, c3]) is a1
    assert common_ancestor([b3, c3, c3]) is b2
    assert common_ancestor([a3, a3, a3]) is a3
    assert [n.frame for n in chain(b3, stop_frame=0)] == [1, 2, 3]
    assert chain(b3, stop_frame=1) == [b2, b3]
    root = Node(None, None, ROOT)
    assert chain(Node(5, root, TRACKED), None)[0].frame == 5


def test_unreachable_nodes_are_freed():
    gc.collect()
    before = Node.alive
    nodes = build_chain([True, False] * 10)
    assert Node.alive == before + 21
    tip = nodes[-1]
    for node in nodes:
        node.parent = None  # what the tracker does once frames are committed
    del nodes, node
    gc.collect()
    # only the tip and the valid frames its memory still remembers stay alive
    assert Node.alive == before + 1 + len(tip.history)
    assert [n.frame for n in tip.history] == list(range(1, 20, 2))


def never_merging(num_frames, max_pending, num_pathways=3, reverse=False):
    """Stream ``num_frames`` frames whose P pathways never share a node again (each slot always takes its own
    candidate), committing as the tracker does. Returns (peak frames waiting, peak live nodes, emitted frames,
    pending count per step)."""
    gc.collect()
    base = Node.alive
    first = 200 if reverse else 0
    step = -1 if reverse else 1
    order = [first + step * position for position in range(num_frames)]
    slots = [[Node(order[0], None, PROMPT)] * num_pathways, None]  # a second, not yet prompted object
    emitted, emitted_frames, waiting, peak_nodes = 1, [order[0]], [], 0
    for position in range(1, num_frames):
        frame = order[position]
        slots = [None if beam is None else [Node(frame, node, TRACKED, candidate=slot) for slot, node in enumerate(beam)]
                 for beam in slots]
        slots = bound_pending(slots, order[0], reverse, position, max_pending)
        final = frontier(slots, order[0], reverse, position)
        if final is not None and final >= emitted:
            heads = [None if beam is None else common_ancestor(beam) for beam in slots]
            frames = order[emitted:final + 1]
            committed = [nodes_on(head, frames) for head in heads if head is not None]
            assert all(sorted(nodes) == sorted(frames) for nodes in committed)
            release(committed)
            emitted_frames += frames
            emitted = final + 1
        waiting.append(position + 1 - emitted)
        peak_nodes = max(peak_nodes, Node.alive - base)
    return max(waiting), peak_nodes, emitted_frames, waiting


@pytest.mark.parametrize("reverse", [False, True])
def test_pending_frames_stay_bounded_when_pathways_never_merge(reverse):
    cap = 4
    short = never_merging(30, cap, reverse=reverse)
    long = never_merging(120, cap, reverse=reverse)
    assert short[0] == long[0] == cap - 1  # frames waiting: flat, below the cap
    assert long[1] == short[1] <= 3 * cap + 1  # live nodes: flat
    order = [200 - i if reverse else i for i in range(120)]
    assert long[2] == order[:len(long[2])] and len(long[2]) > 120 - cap  # every frame once, in order
    unbounded = never_merging(120, None, reverse=reverse)
    assert unbounded[0] == 119 and unbounded[2] == order[:1]  # without the cap nothing is final until the end
    assert unbounded[1] > 3 * 100


def test_bound_pending_keeps_only_the_best_pathway_of_lagging_objects():
    prompt = Node(0, None, PROMPT)
    a1, b1 = Node(1, prompt, TRACKED), Node(1, prompt, TRACKED, candidate=1)
    a2, b2 = Node(2, a1, TRACKED), Node(2, b1, TRACKED)
    merged = Node(1, prompt, TRACKED)
    c2, d2 = Node(2, merged, TRACKED), Node(2, merged, TRACKED, candidate=2)
    slots = [[a2, b2, b2], [c2, d2, c2], None]
    assert frontier(slots, 0, False, 2) == 0
    # object 0 has waited 2 frames (since the prompt), object 1 only 1 frame (since frame 1)
    bounded = bound_pending(slots, 0, False, 2, 2)
    assert bounded[0] == [a2, a2, a2] and bounded[1] == [c2, d2, c2] and bounded[2] is None
    assert frontier(bounded, 0, False, 2) == 1
    assert bound_pending(slots, 0, False, 2, 3) == slots and bound_pending(slots, 0, False, 2, None) == slots
