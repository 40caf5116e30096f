"""samkit.metrics.fewshot on hand-computed fixtures (IoUs worked out in the comments)."""

import pytest
import torch

from samkit.metrics.fewshot import FewShotIoU, binarize_logits, intersection_union

# label: 1 = target, 0 = background, 255 = ignore
LABEL_A = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 255]])
PRED_A = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1]])
# valid pixels: all but (1,3). fg: pred {(0,0),(0,3),(1,0),(1,1),(1,2)}, target {(0,0),(0,1),(1,0),(1,1)}
#   I_fg = 3 ((0,0),(1,0),(1,1)); U_fg = 6 (target 4 + pred-only (0,3),(1,2))
# bg: pred {(0,1),(0,2)}, target {(0,2),(0,3),(1,2)}: I_bg = 1, U_bg = 4
LABEL_B = torch.tensor([[0, 0], [1, 1]])
PRED_B = torch.tensor([[0, 0], [1, 0]])
# fg: I = 1, U = 2; bg: pred {(0,0),(0,1),(1,1)}, target {(0,0),(0,1)}: I = 2, U = 3


def test_intersection_union_by_hand():
    assert intersection_union(PRED_A, LABEL_A).tolist() == [1, 3, 4, 6]
    assert intersection_union(PRED_B, LABEL_B).tolist() == [2, 1, 3, 2]


def test_ignore_pixels_never_count():
    label = torch.full((3, 3), 255)
    label[1, 1] = 1
    pred = torch.ones(3, 3)
    assert intersection_union(pred, label).tolist() == [0, 1, 0, 1]


def test_classwise_miou_fbiou_piou_by_hand():
    meter = FewShotIoU(num_classes=3)
    meter.update_prediction(PRED_A, LABEL_A, class_index=0)
    meter.update_prediction(PRED_B, LABEL_B, class_index=0)
    meter.update_prediction(PRED_B, LABEL_B, class_index=2)
    scores = meter.compute()
    # class 0: I = 3 + 1 = 4, U = 6 + 2 = 8 -> 0.5 ; class 1 never drawn -> 0 ; class 2: 1 / 2 = 0.5
    assert scores.class_iou == pytest.approx((0.5, 0.0, 0.5))
    assert scores.miou == pytest.approx(1.0 / 3.0)
    # fg totals: I = 3 + 1 + 1 = 5, U = 6 + 2 + 2 = 10 -> 0.5; bg: I = 1 + 2 + 2 = 5, U = 4 + 3 + 3 = 10 -> 0.5
    assert scores.piou == pytest.approx(0.5)
    assert scores.fbiou == pytest.approx(0.5)
    assert meter.state.dtype == torch.int64
    assert meter.state.tolist() == [4, 0, 1, 8, 0, 2, 5, 5, 10, 10]


def test_states_sum_across_ranks():
    whole, rank0, rank1 = FewShotIoU(2), FewShotIoU(2), FewShotIoU(2)
    episodes = [(PRED_A, LABEL_A, 0), (PRED_B, LABEL_B, 1), (PRED_B, LABEL_B, 0)]
    for i, (pred, label, c) in enumerate(episodes):
        whole.update_prediction(pred, label, c)
        (rank0 if i % 2 == 0 else rank1).update_prediction(pred, label, c)
    rank0.merge(rank1.state)  # what all_reduce(SUM) of the two states gives
    assert torch.equal(rank0.state, whole.state)
    assert rank0.compute() == whole.compute()


def test_logits_resized_to_label_size_with_align_corners():
    # logits 2x2 [[-1, 1], [-1, 1]] resized to 2x3 with align_corners=True: the middle column is
    # exactly 0 -> sigmoid 0.5 -> foreground (>= 0.5); left column background, right foreground.
    logits = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])
    assert binarize_logits(logits, (2, 3)).tolist() == [[False, True, True], [False, True, True]]
    meter = FewShotIoU(1)
    label = torch.tensor([[0, 1, 1], [0, 0, 255]])
    meter.update(logits[None], label, 0)
    # fg: pred {(0,1),(0,2),(1,1)} (1,2 ignored), target {(0,1),(0,2)}: I = 2, U = 3
    assert meter.state[:2].tolist() == [2, 3]


def test_bad_class_index_and_shapes():
    meter = FewShotIoU(2)
    with pytest.raises(ValueError, match="class_index"):
        meter.update_prediction(PRED_B, LABEL_B, 2)
    with pytest.raises(ValueError, match="shape"):
        intersection_union(PRED_A, LABEL_B)
    with pytest.raises(ValueError, match="does not fit"):
        meter.merge(torch.zeros(3, dtype=torch.int64))
    meter.update_prediction(PRED_B, LABEL_B, 1)
    meter.reset()
    assert int(meter.state.sum()) == 0
