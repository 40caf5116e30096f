"""Tests of ``samkit.referring.loss`` against hand-computed values."""

import math

import pytest
import torch

from samkit.errors import InputError
from samkit.referring.loss import (
    LOSS_KEYS,
    LossWeights,
    ReferringLoss,
    dice_loss,
    point_sample,
    sigmoid_bce_loss,
    uncertain_point_coords,
)


def test_bce_and_dice_hand_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    labels = torch.tensor([[1.0, 0.0]])
    # BCE: (-ln 0.5 - ln 0.25) / 2
    assert sigmoid_bce_loss(logits, labels).item() == pytest.approx((math.log(2) + math.log(4)) / 2, abs=1e-6)
    # Dice: 1 - (2 * 0.5 + 1) / (1.25 + 1 + 1)
    assert dice_loss(logits, labels).item() == pytest.approx(1 - 2 / 3.25, abs=1e-6)
    # Batch mean of per-sample values.
    two = dice_loss(torch.cat([logits, torch.zeros(1, 2)]), torch.cat([labels, torch.zeros(1, 2)]))
    assert two.item() == pytest.approx(((1 - 2 / 3.25) + (1 - 1 / 2.0)) / 2, abs=1e-6)


def test_point_sample_is_bilinear_align_corners_false():
    maps = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    # Pixel centres sit at 0.25 and 0.75; the image centre averages all four; x=0.25, y=0.5 averages 1 and 3.
    coords = torch.tensor([[[0.25, 0.25], [0.5, 0.5], [0.25, 0.5], [0.75, 0.75]]])
    assert point_sample(maps, coords).flatten().tolist() == pytest.approx([1.0, 2.5, 2.0, 4.0])


def test_official_zero_padding_quirk_at_the_border():
    ones = torch.ones(1, 1, 4, 4)
    edge = torch.tensor([[[0.0, 0.5], [0.0625, 0.5], [0.5, 0.5]]])  # left border, 1/4 pixel in, centre
    # Zero padding: at the border the half-pixel outside is 0 -> 0.5; a quarter pixel in -> 0.75.
    assert point_sample(ones, edge, "zeros").flatten().tolist() == pytest.approx([0.5, 0.75, 1.0])
    assert point_sample(ones, edge).flatten().tolist() == pytest.approx([1.0, 1.0, 1.0])
    # A foreground touching the border: the official loss sees soft labels there, the default does not.
    pred = torch.full((1, 4, 4), 8.0)
    target = torch.ones(1, 4, 4)
    corrected = ReferringLoss(num_points=200)(pred, target, generator=torch.Generator().manual_seed(0))
    official = ReferringLoss(num_points=200, official_compat=True)(
        pred, target, generator=torch.Generator().manual_seed(0)
    )
    assert corrected["loss_mask"].item() == pytest.approx(math.log1p(math.exp(-8.0)), abs=1e-6)
    assert official["loss_mask"].item() > 2 * corrected["loss_mask"].item()


def test_uncertain_points_pick_the_smallest_logits():
    # Left half logit 0 (uncertain), right half logit 10: every importance point lands on the left half.
    logits = torch.cat([torch.zeros(1, 1, 8, 4), torch.full((1, 1, 8, 4), 10.0)], dim=3)
    gen = torch.Generator().manual_seed(0)
    coords = uncertain_point_coords(
        logits, num_points=40, oversample_ratio=3, importance_sample_ratio=0.5, generator=gen
    )
    assert coords.shape == (1, 40, 2)
    assert (coords[0, :20, 0] < 0.5).all()  # 20 importance points, all on the uncertain half
    # The candidates are the generator's first draw: the importance points are among them.
    gen = torch.Generator().manual_seed(0)
    candidates = torch.rand(1, 120, 2, generator=gen)
    assert all(any(torch.equal(c, d) for d in candidates[0]) for c in coords[0, :20])
    uniform = torch.rand(1, 20, 2, generator=gen)
    assert torch.equal(coords[0, 20:], uniform[0])


def test_constant_maps_give_hand_computed_losses():
    # Constant logits and targets make every sampled point the same, so the loss is exact by hand.
    points = 50
    loss = ReferringLoss(num_points=points)
    pred = torch.zeros(2, 16, 16)  # p = 0.5
    target = torch.ones(2, 16, 16)
    coarse = torch.full((2, 1, 4, 4), math.log(3.0))  # p = 0.75, against an all-ones target
    out = loss(pred, target, coarse, generator=torch.Generator().manual_seed(0))
    assert set(out) == set(LOSS_KEYS)
    assert out["loss_mask"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["loss_dice"].item() == pytest.approx(1 - (points + 1) / (1.5 * points + 1), abs=1e-6)
    assert out["loss_mask_aux"].item() == pytest.approx(-math.log(0.75), abs=1e-6)
    assert out["loss_dice_aux"].item() == pytest.approx(
        1 - (1.5 * points + 1) / (1.75 * points + 1), abs=1e-6
    )
    total = sum(out[k] for k in LOSS_KEYS[:4])
    assert out["total_loss"].item() == pytest.approx(total.item(), abs=1e-6)
    # An empty target (no-target sample): Dice = sum p / (sum p + 1).
    empty = loss(pred, torch.zeros(2, 16, 16), generator=torch.Generator().manual_seed(0))
    assert set(empty) == {"loss_mask", "loss_dice", "total_loss"}
    assert empty["loss_dice"].item() == pytest.approx(1 - 1 / (0.5 * points + 1), abs=1e-6)


def test_weights_and_gradients():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 32, 32, generator=gen, requires_grad=True)
    coarse = torch.randn(2, 1, 8, 8, generator=gen, requires_grad=True)
    target = (torch.rand(2, 32, 32, generator=gen) > 0.5).long()
    plain = ReferringLoss(num_points=64)(pred, target, coarse, generator=torch.Generator().manual_seed(2))
    weighted = ReferringLoss(
        num_points=64, weights=LossWeights(mask=2.0, dice=0.0, mask_aux=0.5, dice_aux=3.0)
    )(pred, target, coarse, generator=torch.Generator().manual_seed(2))
    for key in LOSS_KEYS[:4]:
        assert torch.equal(plain[key], weighted[key])  # same seed -> same points
    expected = 2 * plain["loss_mask"] + 0.5 * plain["loss_mask_aux"] + 3 * plain["loss_dice_aux"]
    assert weighted["total_loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    plain["total_loss"].backward()
    assert pred.grad.abs().sum() > 0 and coarse.grad.abs().sum() > 0


def test_global_rng_order_matches_official_calls():
    # Official order: final mask (oversampled draw, uniform draw), then coarse mask (same two draws).
    pred = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(3))
    target = torch.zeros(1, 16, 16)
    target[:, 4:12, 4:12] = 1
    torch.manual_seed(7)
    out = ReferringLoss(num_points=30)(pred, target)
    torch.manual_seed(7)
    coords = uncertain_point_coords(pred[:, None], 30, 3.0, 0.75)
    logits = point_sample(pred[:, None], coords).squeeze(1)
    labels = point_sample(target[:, None], coords).squeeze(1)
    assert torch.equal(out["loss_mask"], sigmoid_bce_loss(logits, labels))
    assert torch.equal(out["loss_dice"], dice_loss(logits, labels))
    torch.manual_seed(7)
    out = ReferringLoss(num_points=30, official_compat=True)(pred, target)
    torch.manual_seed(7)
    coords = uncertain_point_coords(pred[:, None], 30, 3.0, 0.75, padding_mode="zeros")
    logits = point_sample(pred[:, None], coords, "zeros").squeeze(1)
    labels = point_sample(target[:, None], coords, "zeros").squeeze(1)
    assert torch.equal(out["loss_mask"], sigmoid_bce_loss(logits, labels))
    assert torch.equal(out["loss_dice"], dice_loss(logits, labels))


def test_bad_inputs():
    loss = ReferringLoss(num_points=10)
    with pytest.raises(InputError, match="pred_logits has batch 2 but target has batch 3"):
        loss(torch.zeros(2, 8, 8), torch.zeros(3, 8, 8))
    with pytest.raises(InputError, match="target must be"):
        loss(torch.zeros(2, 8, 8), torch.zeros(2, 2, 8, 8))
    with pytest.raises(InputError, match="num_points"):
        ReferringLoss(num_points=0)
