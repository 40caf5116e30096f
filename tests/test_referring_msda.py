"""Tests of ``samkit.referring.msda``.

mmcv cannot be installed here (its import needs compiled ops), so the reference is checked against a
hand-computed bilinear fixture and the module's forward against a line-by-line re-statement of mmcv's
``MultiScaleDeformableAttention.forward`` written in this file; the fast formulations are checked
against the reference (a re-statement of mmcv's ``multi_scale_deformable_attn_pytorch``).
"""

import math

import pytest
import torch

from samkit.errors import InputError
from samkit.referring.msda import (
    MultiScaleDeformableAttention,
    choose_method,
    multi_scale_deformable_attn,
    multi_scale_deformable_attn_reference,
)

FAST = ("grid", "bag")
ODD_SHAPES = [[7, 5], [3, 4], [1, 1], [2, 9]]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def random_inputs(seed: int, batch=2, heads=4, channels=8, queries=13, points=3, dtype=torch.float32):
    """Random core inputs over odd level sizes, with locations reaching outside [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(ODD_SHAPES)
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    levels = len(ODD_SHAPES)
    value = torch.randn(batch, keys, heads, channels, generator=gen, dtype=dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=gen, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, levels, points, generator=gen, dtype=dtype)
    return value, shapes, locations, weights / weights.sum((-1, -2), keepdim=True)


def test_reference_equals_hand_computed_bilinear_samples():
    # One level, h=2, w=3, one head, one channel: [[1, 2, 3], [4, 5, 6]].
    value = torch.tensor([1.0, 2, 3, 4, 5, 6]).view(1, 6, 1, 1)
    shapes = torch.tensor([[2, 3]])
    # Pixel coordinates (align_corners=False) are x*3 - 0.5, y*2 - 0.5:
    # (0.5, 0.5) -> (1.0, 0.5): halfway between 2 and 5 = 3.5
    # (0.25, 0.125) -> (0.25, -0.25): row -1 is zero padding; 0.75*0.75*1 + 0.25*0.75*2 = 0.9375
    # (1.5, 0.5) -> (4.0, 0.5): outside the map = 0
    locations = torch.tensor([[0.5, 0.5], [0.25, 0.125], [1.5, 0.5]]).view(1, 1, 1, 1, 3, 2)
    weights = torch.tensor([0.25, 0.5, 0.25]).view(1, 1, 1, 1, 3)
    expected = 0.25 * 3.5 + 0.5 * 0.9375 + 0.25 * 0.0
    out = multi_scale_deformable_attn_reference(value, shapes, locations, weights)
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(expected, abs=1e-6)
    for method in FAST:
        assert multi_scale_deformable_attn(value, shapes, locations, weights, method).item() == pytest.approx(
            expected, abs=1e-6
        )


@pytest.mark.parametrize("method", FAST)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_formulations_equal_reference(method, seed):
    inputs = random_inputs(seed)
    expected = multi_scale_deformable_attn_reference(*inputs)
    out = multi_scale_deformable_attn(*inputs, method=method)
    assert out.shape == expected.shape == (2, 13, 32)
    assert (out - expected).abs().max().item() < 1e-5
    assert expected.abs().max().item() > 0.1  # not trivially zero


@pytest.mark.parametrize("method", ("reference",) + FAST)
def test_gradcheck_float64(method):
    value, shapes, locations, weights = random_inputs(
        3, batch=1, heads=2, channels=2, queries=3, points=2, dtype=torch.float64
    )
    inputs = tuple(t.requires_grad_() for t in (value, locations, weights))

    def fn(v, loc, w):
        return multi_scale_deformable_attn(v, shapes, loc, w, method)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_gradients_match_between_formulations():
    value, shapes, locations, weights = random_inputs(4)
    upstream = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(5))
    grads = {}
    for method in ("reference",) + FAST:
        leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
        (
            multi_scale_deformable_attn(leaves[0], shapes, leaves[1], leaves[2], method) * upstream
        ).sum().backward()
        grads[method] = [leaf.grad for leaf in leaves]
    for method in FAST:
        for fast, ref in zip(grads[method], grads["reference"]):
            assert ref.abs().max() > 0
            assert (fast - ref).abs().max().item() < 1e-4


def test_auto_choice():
    assert choose_method(torch.zeros(1, dtype=torch.float32)) == "bag"
    assert choose_method(torch.zeros(1, dtype=torch.float64)) == "bag"
    assert choose_method(torch.zeros(1, dtype=torch.float16)) == "grid"
    with pytest.raises(InputError, match="unknown deformable-attention method"):
        multi_scale_deformable_attn(*random_inputs(0), method="cuda-kernel")


def test_parameter_names_and_shapes():
    attn = MultiScaleDeformableAttention(
        embed_dims=48, num_heads=6, num_levels=3, num_points=4, value_proj_ratio=0.5
    )
    shapes = {k: tuple(v.shape) for k, v in attn.state_dict().items()}
    assert shapes == {
        "sampling_offsets.weight": (6 * 3 * 4 * 2, 48),
        "sampling_offsets.bias": (6 * 3 * 4 * 2,),
        "attention_weights.weight": (6 * 3 * 4, 48),
        "attention_weights.bias": (6 * 3 * 4,),
        "value_proj.weight": (24, 48),
        "value_proj.bias": (24,),
        "output_proj.weight": (48, 24),
        "output_proj.bias": (48,),
    }


def test_init_weights_like_mmcv():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=64, num_heads=8, num_levels=2, num_points=3)
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.bias) == 0
    bias = attn.sampling_offsets.bias.view(8, 2, 3, 2)
    # Head k points at angle 2*pi*k/8, scaled so the larger |coordinate| is 1, times (point index + 1).
    directions = torch.tensor(
        [[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=torch.float32
    )
    for point in range(3):
        for level in range(2):
            assert torch.allclose(bias[:, level, point], directions * (point + 1), atol=1e-6)
    for linear in (attn.value_proj, attn.output_proj):
        bound = math.sqrt(6.0 / (linear.in_features + linear.out_features))
        assert linear.weight.abs().max() <= bound
        assert linear.weight.abs().max() > 0.9 * bound  # uniform over the whole Xavier range
        assert torch.count_nonzero(linear.bias) == 0


def mmcv_forward(attn, query, value, identity, query_pos, key_padding_mask, reference_points, spatial_shapes):
    """A re-statement of mmcv's forward (batch_first=False), with the reference core."""
    if value is None:
        value = query
    if identity is None:
        identity = query
    if query_pos is not None:
        query = query + query_pos
    query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
    bs, nq, _ = query.shape
    nv = value.shape[1]
    value = attn.value_proj(value)
    if key_padding_mask is not None:
        value = value.masked_fill(key_padding_mask[..., None], 0.0)
    value = value.view(bs, nv, attn.num_heads, -1)
    off = attn.sampling_offsets(query).view(bs, nq, attn.num_heads, attn.num_levels, attn.num_points, 2)
    w = attn.attention_weights(query).view(bs, nq, attn.num_heads, attn.num_levels * attn.num_points)
    w = w.softmax(-1).view(bs, nq, attn.num_heads, attn.num_levels, attn.num_points)
    if reference_points.shape[-1] == 2:
        norm = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
        loc = reference_points[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    else:
        loc = (
            reference_points[:, :, None, :, None, :2]
            + off / attn.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
        )
    out = multi_scale_deformable_attn_reference(value, spatial_shapes, loc, w)
    return attn.output_proj(out).permute(1, 0, 2) + identity


def randomised_module(method: str, seed: int = 0) -> MultiScaleDeformableAttention:
    torch.manual_seed(seed)
    attn = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=4, num_levels=4, num_points=3, value_proj_ratio=0.5, method=method
    ).eval()
    with torch.no_grad():  # non-zero offsets and attention logits so every path matters
        attn.sampling_offsets.weight.normal_(0, 0.3)
        attn.attention_weights.weight.normal_(0, 0.3)
    return attn


@pytest.mark.parametrize("method", ("reference",) + FAST)
@pytest.mark.parametrize("coords", (2, 4))
def test_module_forward_matches_mmcv_restatement(method, coords):
    attn = randomised_module(method)
    gen = torch.Generator().manual_seed(1)
    shapes = torch.tensor(ODD_SHAPES)
    keys, queries, batch = int((shapes[:, 0] * shapes[:, 1]).sum()), 11, 2
    query = torch.randn(queries, batch, 32, generator=gen)
    value = torch.randn(keys, batch, 32, generator=gen)
    pos = torch.randn(queries, batch, 32, generator=gen)
    mask = torch.rand(batch, keys, generator=gen) < 0.3
    ref = torch.rand(batch, queries, 4, coords, generator=gen)
    with torch.no_grad():
        out = attn(
            query,
            value=value,
            query_pos=pos,
            key_padding_mask=mask,
            reference_points=ref,
            spatial_shapes=shapes,
        )
        expected = mmcv_forward(attn, query, value, None, pos, mask, ref, shapes)
    assert out.shape == (queries, batch, 32)
    assert (out - expected).abs().max().item() < 1e-5
    assert (out - query).abs().max().item() > 1e-2  # the attention term is not negligible


def test_module_contract_details():
    gen = torch.Generator().manual_seed(2)
    shapes = torch.tensor([[3, 5]])
    query = torch.randn(2, 15, 32, generator=gen)  # 15 queries = 15 keys, so value may default to the query
    pos = torch.randn(2, 15, 32, generator=gen)
    value = torch.randn(2, 15, 32, generator=gen)
    ref = torch.rand(1, 15, 1, 2, generator=gen)  # broadcast over the batch
    torch.manual_seed(3)
    single = MultiScaleDeformableAttention(32, 4, num_levels=1, num_points=3).eval()
    with torch.no_grad():
        single.sampling_offsets.weight.normal_(0, 0.3)
        seq = single(
            query.transpose(0, 1), value=value.transpose(0, 1), reference_points=ref, spatial_shapes=shapes
        )
        single.batch_first = True
        bf = single(query, value=value, reference_points=ref, spatial_shapes=shapes)
        assert torch.allclose(bf, seq.transpose(0, 1))  # batch_first only changes the layout
        # value defaults to the query *without* query_pos; identity defaults to the query.
        a = single(query, query_pos=pos, reference_points=ref, spatial_shapes=shapes)
        b = single(query, value=query, query_pos=pos, reference_points=ref, spatial_shapes=shapes)
        assert torch.equal(a, b)
        d = single(query, value=query + pos, query_pos=pos, reference_points=ref, spatial_shapes=shapes)
        assert not torch.allclose(a, d, atol=1e-3)
        c = single(
            query,
            value=query,
            identity=torch.zeros_like(query),
            query_pos=pos,
            reference_points=ref,
            spatial_shapes=shapes,
        )
        assert torch.allclose(a, c + query)
        # Padded keys contribute nothing: changing their values leaves the output unchanged.
        mask = torch.zeros(2, 15, dtype=torch.bool)
        mask[:, ::2] = True
        changed = value.clone()
        changed[mask] = 100.0
        m1 = single(query, value=value, key_padding_mask=mask, reference_points=ref, spatial_shapes=shapes)
        m2 = single(query, value=changed, key_padding_mask=mask, reference_points=ref, spatial_shapes=shapes)
        assert torch.allclose(m1, m2, atol=1e-5)
        assert not torch.allclose(m1, bf, atol=1e-3)
        # Dropout applies to the attention term, not the identity (as mmcv).
        drop = MultiScaleDeformableAttention(32, 4, num_levels=1, num_points=3, dropout=1.0, batch_first=True)
        drop.train()
        assert torch.equal(drop(query, value=value, reference_points=ref, spatial_shapes=shapes), query)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="divisible by num_heads"):
        MultiScaleDeformableAttention(embed_dims=30, num_heads=4)
    attn = MultiScaleDeformableAttention(32, 4, num_levels=1, num_points=2, batch_first=True)
    query = torch.randn(1, 3, 32)
    with pytest.raises(InputError, match="cover 12 keys; value has 10"):
        attn(
            query,
            value=torch.randn(1, 10, 32),
            reference_points=torch.rand(1, 3, 1, 2),
            spatial_shapes=torch.tensor([[3, 4]]),
        )
    with pytest.raises(InputError, match="must be 2 or 4, got 3"):
        attn(
            query,
            value=torch.randn(1, 12, 32),
            reference_points=torch.rand(1, 3, 1, 3),
            spatial_shapes=torch.tensor([[3, 4]]),
        )
    with pytest.raises(InputError, match="needs reference_points"):
        attn(query)
