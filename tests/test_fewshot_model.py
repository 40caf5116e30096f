"""FSSAM model: official key layout, checkpoint loading, DINOv2 feature path, SCMA plumbing vs sam2 itself."""

import math

import pytest
import torch
import torch.nn.functional as F

from samkit.errors import InputError
from samkit.fewshot import attention as scma
from samkit.fewshot import build_fssam
from samkit.fewshot.dino import TINY_DINO, DinoV2
from samkit.fewshot.prior import cosine_map, minmax, pseudo_prompt_priors, weighted_gap

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 128


def hub_dino_keys(depth: int) -> set[str]:
    """The key names of torch.hub's ``dinov2_vitb14`` state_dict (175 for depth 12)."""
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
             "mlp.fc2.bias", "ls2.gamma"]
    keys = {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "norm.weight", "norm.bias"}
    return keys | {f"blocks.{i}.{name}" for i in range(depth) for name in block}


@pytest.fixture(scope="module")
def tiny():
    return build_fssam("tiny", dino="tiny", seed=3)


def episode(shots: int, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 255
    images = torch.rand(batch, shots, 3, SIZE, SIZE, generator=g) * 255
    masks = torch.zeros(batch, shots, SIZE, SIZE, dtype=torch.long)
    masks[..., 32:96, 40:100] = 1
    masks[..., :4, :] = 255
    return query, images, masks


def test_children_and_keys_follow_the_official_layout(tiny):
    from samkit.backbones.sam2_models import build_sam2_model
    from samkit.fewshot.build import SAM2_0_FLAGS

    assert [name for name, _ in tiny.named_children()] == ["sam2", "dino"]
    sam = build_sam2_model("tiny-sam2", image_size=SIZE, apply_postprocessing=False, overrides=SAM2_0_FLAGS)
    expected = {f"sam2.{k}" for k in sam.state_dict()} | {f"dino.{k}" for k in hub_dino_keys(TINY_DINO.depth)}
    assert set(tiny.state_dict()) == expected
    assert not any("no_obj_embed_spatial" in k or "obj_ptr_tpos_proj" in k for k in expected)


@pytest.mark.parametrize("backbone, sam_keys", [
    ("sam2-hiera-small", 516), ("sam2-hiera-base-plus", 612), ("sam2-hiera-large", 900)])
def test_real_sizes_have_the_official_key_counts_and_shapes(backbone, sam_keys, monkeypatch):
    linspace = torch.linspace  # Hiera reads its drop-path rates with .item(): keep that one tensor on the CPU
    monkeypatch.setattr(torch, "linspace", lambda *args, **kwargs: linspace(*args, **{**kwargs, "device": "cpu"}))
    with torch.device("meta"):
        model = build_fssam(backbone, seed=None, device="meta")
    state = model.state_dict()
    dino = {k[len("dino."):] for k in state if k.startswith("dino.")}
    assert dino == hub_dino_keys(12)
    assert sum(k.startswith("sam2.") for k in state) == sam_keys
    assert tuple(state["dino.pos_embed"].shape) == (1, 1370, 768)
    assert tuple(state["dino.mask_token"].shape) == (1, 768)
    assert tuple(state["sam2.maskmem_tpos_enc"].shape) == (7, 1, 1, 64)
    assert model.sam2.image_size == 512 and model.dino_size == 560
    trained = ("sam2.sam_mask_decoder.", "sam2.memory_encoder.", "sam2.memory_attention.")
    counts = [sum(k.startswith(p) for k in state) for p in trained]
    assert counts == [131, 40, 106]


def test_official_checkpoint_file_loads_strictly(tiny, tmp_path):
    state = {f"module.{k}": v.clone() + 0.5 for k, v in tiny.state_dict().items()}
    optimizer = torch.optim.AdamW(tiny.sam2.memory_encoder.parameters(), lr=1e-3)
    path = tmp_path / "best_1shot.pth"
    torch.save({"epoch": 3.5, "state_dict": state, "optimizer": optimizer.state_dict()}, path)
    loaded = build_fssam("tiny", dino="tiny", seed=9, checkpoint=path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[f"module.{key}"]), key


def test_mismatched_checkpoints_are_named(tiny, tmp_path):
    state = dict(tiny.state_dict())
    state.pop("sam2.memory_encoder.out_proj.weight")
    state["sam2.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(InputError, match=r"(?s)missing keys.*sam2\.memory_encoder\.out_proj.*unexpected keys.*sam2\.extra"):
        build_fssam("tiny", dino="tiny", checkpoint=path)

    sam_only = {k[len("sam2."):]: v for k, v in tiny.state_dict().items() if k.startswith("sam2.")}
    torch.save({"model": sam_only}, tmp_path / "sam2.pt")
    with pytest.raises(InputError, match="not an FSSAM checkpoint"):
        build_fssam("tiny", dino="tiny", checkpoint=tmp_path / "sam2.pt")

    other = dict(tiny.state_dict())
    other["sam2.image_encoder.trunk.pos_embed"] = torch.zeros(1, 32, 7, 7)
    torch.save({"state_dict": other}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="another backbone size"):
        build_fssam("tiny", dino="tiny", checkpoint=tmp_path / "other.pth")


def test_public_weights_build_the_start_point(tiny, tmp_path):
    sam_state = {k[len("sam2."):]: v + 1 for k, v in tiny.state_dict().items() if k.startswith("sam2.")}
    dino_state = {k[len("dino."):]: v - 1 for k, v in tiny.state_dict().items() if k.startswith("dino.")}
    torch.save({"model": sam_state}, tmp_path / "sam2_hiera_tiny.pt")
    torch.save(dino_state, tmp_path / "dinov2.pth")
    model = build_fssam("tiny", dino="tiny", sam2_checkpoint=tmp_path / "sam2_hiera_tiny.pt",
                        dino_checkpoint=tmp_path / "dinov2.pth")
    assert torch.equal(model.sam2.memory_encoder.out_proj.weight, sam_state["memory_encoder.out_proj.weight"])
    assert torch.equal(model.dino.pos_embed, dino_state["pos_embed"])


def test_dino_matches_timm_at_its_native_size():
    from timm.models.vision_transformer import VisionTransformer

    dino = DinoV2(TINY_DINO).eval()
    with torch.no_grad():
        for p in dino.parameters():
            p.normal_(0, 0.2)
    vit = VisionTransformer(img_size=112, patch_size=14, embed_dim=48, depth=2, num_heads=2, qkv_bias=True,
                            init_values=1.0, num_classes=0).eval()
    state = {k: v for k, v in dino.state_dict().items() if k != "mask_token"}
    vit.load_state_dict(state)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        ours = dino.last_features(x)
        reference = vit.forward_features(x)[:, 1:].reshape(2, 8, 8, 48).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """PyTorch's bicubic convolution weights (Keys, a = -0.75) for taps -1, 0, 1, 2 at fraction t."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def test_dino_position_resampling_uses_the_offset_scale_factor():
    dino = DinoV2(TINY_DINO)
    side, grid = 8, 10  # 112 px pretrain, 140 px input
    values = torch.tensor([0.0, 1.0, 4.0, 2.0, -1.0, 3.0, 5.0, 0.5])  # along x; constant along y
    with torch.no_grad():
        dino.pos_embed[0, 1:] = values.view(1, side).expand(side, side).reshape(-1, 1).expand(-1, 48)
    out = dino.interpolate_pos_encoding(grid)[0, 1:, 0].view(grid, grid)
    scale = (grid + 0.1) / side  # DINOv2: scale_factor = (40 + 0.1) / 37 for 560 px at 518 px pretrain
    for col in range(grid):
        source = (col + 0.5) / scale - 0.5
        base = math.floor(source)
        taps = [values[min(max(base + i, 0), side - 1)].item() for i in (-1, 0, 1, 2)]
        expected = sum(w * v for w, v in zip(cubic_weights(source - base), taps))
        assert out[3, col].item() == pytest.approx(expected, abs=1e-5)
    plain = F.interpolate(dino.pos_embed[:, 1:].reshape(1, side, side, 48).permute(0, 3, 1, 2).detach(),
                          size=(grid, grid), mode="bicubic")[0, 0]
    assert (plain - out).abs().max() > 1e-2  # a plain resize to the grid differs


def test_prior_pieces_on_hand_computed_fixtures():
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert weighted_gap(feats, mask).item() == pytest.approx(5.0 / (2.0 + 5e-4))
    two = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2): vectors (1,0) and (0,1)
    proto = torch.tensor([[[[1.0]], [[1.0]]]])
    assert cosine_map(two, proto)[0].tolist() == pytest.approx([1 / math.sqrt(2)] * 2, abs=1e-6)
    assert minmax(torch.tensor([2.0, 4.0, 3.0])).tolist() == pytest.approx([0.0, 1.0, 0.5], abs=1e-6)

    # query == support: the FG prior peaks inside the mask, the contrast prior is 0 outside it
    g = torch.Generator().manual_seed(0)
    fg_vec, bg_vec = torch.randn(8, generator=g), torch.randn(8, generator=g)
    mask = torch.zeros(1, 1, 1, 6, 6)
    mask[..., 1:4, 1:4] = 1
    feats = torch.where(mask[0, 0].bool(), fg_vec.view(8, 1, 1), bg_vec.view(8, 1, 1)).unsqueeze(0)
    prior_fg, prior_ae = pseudo_prompt_priors(feats, feats.unsqueeze(1), mask, (6, 6))
    inside = mask[0, 0, 0].bool()
    assert torch.allclose(prior_fg[0, 0][inside], torch.ones(9), atol=1e-5)
    assert torch.allclose(prior_ae[0, 0][~inside], torch.zeros(27), atol=1e-6)
    assert prior_ae[0, 0][inside].min() > 0.99


def test_memory_attention_plumbing_equals_sam2_without_the_bias(tiny, monkeypatch):
    """With the calibration bias scaled to 0, 1-shot SCMA is exactly sam2's own MemoryAttention."""
    monkeypatch.setattr(scma, "CALIBRATION_SCALE", 0.0)
    query, images, masks = episode(1)
    captured = {}
    real = scma.calibrated_memory_attention

    def spy(*args):
        captured["args"] = args
        captured["out"] = real(*args)
        return captured["out"]

    monkeypatch.setattr("samkit.fewshot.model.calibrated_memory_attention", spy)
    with torch.no_grad():
        tiny(query, images, masks)
        attention, current, current_pos, memory, memory_pos, calibration, _ = captured["args"]
        reference = attention(curr=current, memory=memory, curr_pos=current_pos, memory_pos=memory_pos,
                              num_obj_ptr_tokens=calibration.num_pointer_tokens)
    assert calibration.num_pointer_tokens == 2 * 4
    assert memory.shape[0] == 2 * 8 * 8 + 8
    torch.testing.assert_close(captured["out"], reference, rtol=1e-5, atol=1e-5)


def test_calibration_changes_the_output_and_compat_only_matters_for_k_above_1(tiny):
    query, images, masks = episode(3, batch=2, seed=1)
    masks[:, 1, :, :64] = 0  # shots differ, so the first-shot-only slice is visible
    with torch.no_grad():
        default3 = tiny(query, images, masks)
        default1 = tiny(query, images[:, :1], masks[:, :1])
        tiny.official_compat = True
        try:
            compat3 = tiny(query, images, masks)
            compat1 = tiny(query, images[:, :1], masks[:, :1])
        finally:
            tiny.official_compat = False
    assert default3.shape == (2, SIZE, SIZE)
    assert torch.equal(default1, compat1)
    assert (default3 - compat3).abs().max() > 1e-4


def test_support_reuse_and_priors_equal_the_plain_forward(tiny):
    query, images, masks = episode(2, batch=2, seed=2)
    with torch.no_grad():
        full = tiny(query, images, masks)
        support = tiny.encode_support(images[:1], masks[:1])
        features = tiny.encode_query(query)
        reused = tiny.segment(features, support)
        single = tiny(query, images[:1].expand(2, -1, -1, -1, -1), masks[:1].expand(2, -1, -1, -1))
        priors = tiny.priors(features, support.expand(2))
        from_priors = tiny(query, images[:1].expand(2, -1, -1, -1, -1), masks[:1].expand(2, -1, -1, -1),
                           priors=priors)
    torch.testing.assert_close(reused, single, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(from_priors, single, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full[1], single[1], atol=1e-4)  # the second query's own support differs


def test_gradients_reach_only_the_trained_modules(tiny):
    query, images, masks = episode(1)
    tiny.train()
    try:
        logits = tiny(query, images, masks)
        logits.sigmoid().mean().backward()
    finally:
        tiny.eval()
    grads = {name for name, p in tiny.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    tiny.zero_grad(set_to_none=True)
    assert any(n.startswith("sam2.memory_attention.") for n in grads)
    assert any(n.startswith("sam2.memory_encoder.") for n in grads)
    assert any(n.startswith("sam2.sam_mask_decoder.") for n in grads)
    assert not any(n.startswith(("dino.", "sam2.image_encoder.")) for n in grads)


def test_dice_loss_on_a_hand_computed_fixture():
    from samkit.fewshot import dice_loss

    logits = torch.tensor([[[0.0, 100.0], [-100.0, 0.0]]])  # p = 0.5, 1, 0, 0.5
    target = torch.tensor([[[1, 1], [255, 0]]])  # 255 counts as background
    expected = 1 - 2 * (0.5 + 1.0) / ((0.25 + 1 + 0 + 0.25) + 2)
    assert dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert dice_loss(torch.full((1, 2, 2), -100.0), torch.zeros(1, 2, 2)).item() == pytest.approx(1.0)
