"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch, with mmcv's module contract.

``MultiScaleDeformableAttention`` has mmcv's constructor, parameter names (``sampling_offsets``,
``attention_weights``, ``value_proj``, ``output_proj``), initialisation and forward contract, so an
mmcv-layout state_dict loads as is and no compiled extension is needed.

The core sampling has three exact formulations (they differ only by float summation order):

* ``"reference"``: mmcv's ``multi_scale_deformable_attn_pytorch`` restated -- one ``grid_sample`` per
  level over (batch x heads), all levels stacked, then weighted and summed.
* ``"grid"``: one ``grid_sample`` per level over (batch x heads), the attention weighting fused into a
  running sum per level, so the (levels x points) stack is never built.
* ``"bag"``: the bilinear corners of every sampling point of every level are turned into row indices of
  the projected value (viewed as (batch * keys * heads, head_dim), no copy) and weights (bilinear
  weight x attention weight, zero outside the map); one ``F.embedding_bag(mode="sum")`` then gathers and
  sums them in a single fused kernel, writing the output directly in (batch, queries, heads * head_dim)
  layout.

``method="auto"`` (the default) uses ``"bag"`` for float32 / float64 values on any device and for any
floating dtype on CUDA, and ``"grid"`` otherwise (half precision on CPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import InputError

METHODS = ("auto", "reference", "grid", "bag")
CORNERS = 4
"""Bilinear interpolation reads the four integer neighbours of a sampling point."""
PIXEL_CENTRE = 0.5
"""``align_corners=False``: normalised coordinate 0 is the left edge of pixel 0, whose centre is 0.5."""


def _level_sizes(spatial_shapes: torch.Tensor) -> list[tuple[int, int]]:
    """The (height, width) of every level as Python ints."""
    return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]


def multi_scale_deformable_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """mmcv's pure-PyTorch formulation, same ops in the same order.

    value (B, S, heads, C); spatial_shapes (L, 2) as (h, w); sampling_locations
    (B, Q, heads, L, P, 2) as (x, y) in [0, 1]; attention_weights (B, Q, heads, L, P) -> (B, Q, heads * C).
    """
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    sizes = _level_sizes(spatial_shapes)
    value_list = value.split([h * w for h, w in sizes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(sizes):
        # (B, h*w, heads, C) -> (B*heads, C, h, w)
        value_l = value_list[level].flatten(2).transpose(1, 2).reshape(batch * heads, channels, h, w)
        # (B, Q, heads, P, 2) -> (B*heads, Q, P, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return output.view(batch, heads * channels, queries).transpose(1, 2).contiguous()


def multi_scale_deformable_attn_grid(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """One ``grid_sample`` per level batched over heads, weighting fused per level (same contract)."""
    batch, _, heads, channels = value.shape
    queries = sampling_locations.shape[1]
    sizes = _level_sizes(spatial_shapes)
    # (B, S, heads, C) -> (B*heads, C, S): one transpose for all levels.
    value_t = value.permute(0, 2, 3, 1).reshape(batch * heads, channels, -1)
    # (B, Q, heads, L, P, 2) -> (B*heads, L, Q, P, 2)
    grids = (2 * sampling_locations - 1).permute(0, 2, 3, 1, 4, 5).flatten(0, 1)
    weights = attention_weights.permute(0, 2, 3, 1, 4).flatten(0, 1)  # (B*heads, L, Q, P)
    output = value.new_zeros(batch * heads, channels, queries)
    start = 0
    for level, (h, w) in enumerate(sizes):
        value_l = value_t[:, :, start : start + h * w].reshape(batch * heads, channels, h, w)
        start += h * w
        sampled = F.grid_sample(
            value_l, grids[:, level], mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*heads, C, Q, P)
        output = output + (sampled * weights[:, level].unsqueeze(1)).sum(-1)
    return output.view(batch, heads * channels, queries).transpose(1, 2).contiguous()


def multi_scale_deformable_attn_bag(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear corners of all levels gathered and weighted by one ``embedding_bag`` (same contract)."""
    batch, keys, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    device, dtype = value.device, sampling_locations.dtype
    shapes = spatial_shapes.to(device=device, dtype=torch.long)
    height = shapes[:, 0].view(1, 1, 1, levels, 1)
    width = shapes[:, 1].view(1, 1, 1, levels, 1)
    areas = height * width
    start = torch.cumsum(areas, dim=3) - areas
    # Pixel coordinates with the align_corners=False convention: x * W - 0.5.
    x = sampling_locations[..., 0] * width.to(dtype) - PIXEL_CENTRE
    y = sampling_locations[..., 1] * height.to(dtype) - PIXEL_CENTRE
    x_floor, y_floor = x.floor(), y.floor()
    fx, fy = x - x_floor, y - y_floor
    # Clamping to [-2, size] keeps both neighbours' validity and avoids overflow on far-away points.
    x0 = torch.minimum(x_floor.clamp(min=-2).long(), width)
    y0 = torch.minimum(y_floor.clamp(min=-2).long(), height)
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)  # (B, Q, heads, L, P, 4)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    wx = torch.stack([1 - fx, fx, 1 - fx, fx], dim=-1)
    wy = torch.stack([1 - fy, 1 - fy, fy, fy], dim=-1)
    height, width, start = height.unsqueeze(-1), width.unsqueeze(-1), start.unsqueeze(-1)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    weights = wx * wy * attention_weights.unsqueeze(-1).to(dtype) * inside
    position = start + ys.clamp(min=0).minimum(height - 1) * width + xs.clamp(min=0).minimum(width - 1)
    batch_offset = torch.arange(batch, device=device).view(batch, 1, 1, 1, 1, 1) * keys
    head_offset = torch.arange(heads, device=device).view(1, 1, heads, 1, 1, 1)
    rows = (batch_offset + position) * heads + head_offset  # row of value.view(B*S*heads, C)
    bag = levels * points * CORNERS
    output = F.embedding_bag(
        rows.reshape(-1, bag),
        value.reshape(batch * keys * heads, channels),
        per_sample_weights=weights.reshape(-1, bag).to(value.dtype),
        mode="sum",
    )
    return output.view(batch, queries, heads * channels)


_FORMULATIONS = {
    "reference": multi_scale_deformable_attn_reference,
    "grid": multi_scale_deformable_attn_grid,
    "bag": multi_scale_deformable_attn_bag,
}


def choose_method(value: torch.Tensor) -> str:
    """The formulation ``method="auto"`` uses for this value tensor (see the module docstring)."""
    if value.is_cuda or value.dtype in (torch.float32, torch.float64):
        return "bag"
    return "grid"


def multi_scale_deformable_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    method: str = "auto",
) -> torch.Tensor:
    """Multi-scale deformable attention sampling, (B, S, heads, C) -> (B, Q, heads * C)."""
    if method not in METHODS:
        raise InputError(f"unknown deformable-attention method {method!r}; expected one of {METHODS}")
    if method == "auto":
        method = choose_method(value)
    return _FORMULATIONS[method](value, spatial_shapes, sampling_locations, attention_weights)


class MultiScaleDeformableAttention(nn.Module):
    """mmcv's ``MultiScaleDeformableAttention`` (same arguments, parameters, init and forward).

    ``im2col_step``, ``norm_cfg`` and ``init_cfg`` are kept for signature compatibility; like mmcv's
    CPU path, the pure-PyTorch core does not use them. ``method`` picks the core formulation.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        im2col_step: int = 64,
        dropout: float = 0.1,
        batch_first: bool = False,
        norm_cfg: dict | None = None,
        init_cfg: dict | None = None,
        value_proj_ratio: float = 1.0,
        method: str = "auto",
    ) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise InputError(f"embed_dims must be divisible by num_heads, got {embed_dims} and {num_heads}")
        if method not in METHODS:
            raise InputError(f"unknown deformable-attention method {method!r}; expected one of {METHODS}")
        self.norm_cfg = norm_cfg
        self.init_cfg = init_cfg
        self.dropout = nn.Dropout(dropout)
        self.batch_first = batch_first
        self.im2col_step = im2col_step
        self.embed_dims = embed_dims
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.method = method
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        value_proj_size = int(embed_dims * value_proj_ratio)
        self.value_proj = nn.Linear(embed_dims, value_proj_size)
        self.output_proj = nn.Linear(value_proj_size, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's init: zero offset weights with a radial bias grid, zero attention weights, Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        device = self.sampling_offsets.weight.device
        thetas = torch.arange(self.num_heads, dtype=torch.float32, device=device) * (
            2.0 * math.pi / self.num_heads
        )
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.num_heads, 1, 1, 2)
        grid = grid.repeat(1, self.num_levels, self.num_points, 1)
        for point in range(self.num_points):
            grid[:, :, point, :] *= point + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        identity: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        level_start_index: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """``dropout(output_proj(attention)) + identity``, as mmcv.

        query (Q, B, D) or (B, Q, D) when ``batch_first``; value likewise with S keys (defaults to the
        query without ``query_pos``); identity defaults to the query; key_padding_mask (B, S), True =
        padding; reference_points (B|1, Q, L|1, 2) as (x, y) in [0, 1], or (..., 4) as boxes
        (cx, cy, w, h); spatial_shapes (L, 2) as (h, w). ``key``, ``level_start_index`` are unused
        (as in mmcv's CPU path).
        """
        if reference_points is None or spatial_shapes is None:
            raise InputError("MultiScaleDeformableAttention needs reference_points and spatial_shapes")
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        batch, num_query, _ = query.shape
        _, num_value, _ = value.shape
        if int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum()) != num_value:
            raise InputError(
                f"spatial_shapes {spatial_shapes.tolist()} cover "
                f"{int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())} keys; value has {num_value}"
            )
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, num_value, self.num_heads, -1)
        offsets = self.sampling_offsets(query).view(
            batch, num_query, self.num_heads, self.num_levels, self.num_points, 2
        )
        weights = self.attention_weights(query).view(
            batch, num_query, self.num_heads, self.num_levels * self.num_points
        )
        weights = weights.softmax(-1).view(batch, num_query, self.num_heads, self.num_levels, self.num_points)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            locations = (
                reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise InputError(
                f"the last dimension of reference_points must be 2 or 4, got {reference_points.shape[-1]}"
            )
        output = multi_scale_deformable_attn(value, spatial_shapes, locations, weights, self.method)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity
