"""Tests of ``samkit.metrics.referring`` on hand-computed fixtures."""

import numpy as np
import pytest
import torch

from samkit.errors import InputError
from samkit.metrics.referring import ReferringMetrics, eval_masks

E = [[0, 0, 0], [0, 0, 0]]
# (prediction, ground truth, no-target flag)
SAMPLES = [
    ([[1, 0, 0], [0, 0, 0]], [[1, 1, 0], [0, 0, 0]], False),  # I=1 U=2 IoU .5
    ([[1, 1, 1], [1, 0, 0]], [[1, 1, 1], [1, 0, 0]], False),  # I=4 U=4 IoU 1
    (E, [[0, 0, 0], [0, 0, 1]], False),  # empty prediction on a target: I=0 U=1 (FP)
    (E, E, True),  # no target, predicted empty: TP, gIoU 1
    ([[1, 1, 0], [0, 0, 0]], E, True),  # no target, predicted 2 pixels: FN, U=2
]
EXPECTED = {
    "oIoU": 5 / 7,
    "mIoU": 0.5,
    "Prec@0.5": 2 / 3,
    "Prec@0.6": 1 / 3,
    "Prec@0.7": 1 / 3,
    "Prec@0.8": 1 / 3,
    "Prec@0.9": 1 / 3,
    "cIoU": 5 / 9,
    "gIoU": (0.5 + 1 + 0 + 1 + 0) / 5,
    "N-acc": 0.5,
    "T-acc": 2 / 3,
    "Acc": 0.5,
    "num_samples": 5,
    "num_targeted": 3,
    "num_no_target": 2,
}


def arrays(samples):
    pred = np.array([s[0] for s in samples], dtype=bool)
    gt = np.array([s[1] for s in samples], dtype=bool)
    return pred, gt, np.array([s[2] for s in samples])


def check(results, expected=EXPECTED):
    assert set(results) == set(expected)
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-12), key


def test_hand_fixture_numpy_batch():
    metrics = ReferringMetrics()
    metrics.update(*arrays(SAMPLES))
    check(metrics.compute())


def test_hand_fixture_torch_one_by_one_and_default_flags():
    metrics = ReferringMetrics()
    for pred, gt, _ in SAMPLES:  # no flag: an empty ground truth means "no target"
        metrics.update(torch.tensor(pred), torch.tensor(gt))
    check(metrics.compute())


def test_shards_sum_to_the_whole():
    pred, gt, flags = arrays(SAMPLES)
    shards = [ReferringMetrics() for _ in range(3)]
    for i, shard in enumerate(shards):  # rank i gets samples i, i+3, ...
        shard.update(pred[i::3], gt[i::3], flags[i::3])
    summed = sum(shard.state() for shard in shards)
    gathered = ReferringMetrics()
    gathered.load_state(summed)
    check(gathered.compute())
    merged = ReferringMetrics()
    for shard in shards:
        merged.merge(shard)
    check(merged.compute())


def test_undefined_scores_are_none_and_classic_only():
    metrics = ReferringMetrics()
    metrics.update(*arrays(SAMPLES[:2]))
    results = metrics.compute()
    assert results["oIoU"] == pytest.approx(5 / 6)
    assert results["cIoU"] == pytest.approx(5 / 6)  # no no-target sample: cIoU = oIoU
    assert results["gIoU"] == pytest.approx(0.75)
    assert results["N-acc"] is None and results["Acc"] is None
    assert results["T-acc"] == 1.0
    empty = ReferringMetrics().compute()
    assert empty["oIoU"] is None and empty["num_samples"] == 0


def test_no_target_flag_forces_zero_intersection_like_rela():
    # A sample flagged no-target whose mask is not empty: I counts 0, U the union.
    metrics = ReferringMetrics()
    metrics.update(np.ones((1, 2, 2), bool), np.ones((1, 2, 2), bool), [True])
    results = metrics.compute()
    assert results["cIoU"] == 0.0 and results["gIoU"] == 0.0 and results["N-acc"] == 0.0


def test_bad_inputs():
    metrics = ReferringMetrics()
    with pytest.raises(InputError, match="differs from target shape"):
        metrics.update(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))
    with pytest.raises(InputError, match="one entry per sample"):
        metrics.add_counts([1, 2], [2, 2], [1, 1], [False])
    with pytest.raises(InputError, match="between 0 and its union"):
        metrics.add_counts([3], [2], [1], [False])
    with pytest.raises(InputError, match="state has"):
        metrics.load_state(np.zeros(3))


def test_eval_masks_original_and_resized():
    logits = torch.tensor([[[-1.0, 1.0], [-1.0, 1.0]]])  # network output at its 2x2 input size
    target = torch.zeros(1, 4, 4, dtype=torch.uint8)
    target[:, :, 2:] = 1
    # Bilinear (align_corners=False) to 4x4 gives columns -1, -0.5, 0.5, 1: the right half is foreground.
    pred, gt = eval_masks(logits, target)
    assert pred.shape == gt.shape == (1, 4, 4)
    assert torch.equal(pred, target.bool())
    # Resized space: the target goes to 2x2 by nearest neighbour.
    pred, gt = eval_masks(logits, target, space="resized")
    assert torch.equal(pred, torch.tensor([[[False, True], [False, True]]]))
    assert torch.equal(gt, pred)
    assert eval_masks(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))[0].all()  # logit 0 = probability 0.5
    with pytest.raises(InputError, match="unknown evaluation space"):
        eval_masks(logits, target, space="native")
