"""ReferSAM model: structure, parity of its pieces with segment-anything / transformers, batching, loading."""

import math
import warnings

import pytest
import torch
import transformers

from samkit.errors import InputError
from samkit.referring.attention import MultiHeadAttention, MultiScaleAttention, SinePositionalEncoding
from samkit.referring.build import build_refersam, build_sam, load_refersam_checkpoint, sam_state_to_refersam
from samkit.referring.decoder import decode_single_mask, dense_positional_encoding

SIZE = 128
TOKENS = 8

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_bert_config():
    return transformers.BertConfig(
        vocab_size=64, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )


def tiny_clip_config():
    return transformers.CLIPTextConfig(
        vocab_size=64, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=TOKENS, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def shake(model, scale=0.05, seed=0):
    """Perturb every parameter so that no branch is a no-op at init (gamma 1e-6, zero offsets ...)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * scale)
    return model


def inputs(batch, seed=0, size=SIZE):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=gen)
    ids = torch.randint(3, 60, (batch, TOKENS), generator=gen)
    mask = torch.zeros(batch, TOKENS, dtype=torch.long)
    for i in range(batch):
        mask[i, : 3 + 2 * i] = 1
    ids[mask == 0] = 0
    return images, ids, mask


@pytest.fixture(scope="module")
def tiny_bert_model():
    return shake(build_refersam("tiny", tiny_bert_config(), seed=0))


def test_forward_shapes_and_batch_equals_single(tiny_bert_model):
    images, ids, mask = inputs(2)
    with torch.no_grad():
        pred, coarse = tiny_bert_model(images, ids, mask)
        singles = [tiny_bert_model(images[i : i + 1], ids[i : i + 1], mask[i : i + 1]) for i in range(2)]
    assert pred.shape == (2, SIZE, SIZE) and coarse.shape == (2, 1, SIZE // 4, SIZE // 4)
    for i, (single_pred, single_coarse) in enumerate(singles):
        torch.testing.assert_close(pred[i : i + 1], single_pred, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(coarse[i : i + 1], single_coarse, atol=1e-5, rtol=1e-5)
    assert pred.std() > 0 and not torch.equal(pred[0], pred[1])


def test_padded_tokens_do_not_matter(tiny_bert_model):
    images, ids, mask = inputs(1)
    changed = ids.clone()
    changed[mask == 0] = 7
    with torch.no_grad():
        pred, _ = tiny_bert_model(images, ids, mask)
        pred_changed, _ = tiny_bert_model(images, changed, mask)
        other, _ = tiny_bert_model(images, ids.roll(1, dims=1), mask)
    torch.testing.assert_close(pred, pred_changed, atol=1e-5, rtol=1e-5)
    assert (pred - other).abs().max() > 1e-4  # the words themselves do matter


def test_batched_decoder_matches_pip_mask_decoder():
    sam = shake(build_sam("tiny", seed=0), seed=1)
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(3, 256, 8, 8, generator=gen)
    sparse = torch.randn(3, 4, 256, generator=gen)
    dense = torch.randn(3, 256, 8, 8, generator=gen)
    pe = sam.prompt_encoder.pe_layer((8, 8)).unsqueeze(0)
    assert torch.equal(dense_positional_encoding(sam.prompt_encoder, (8, 8)), pe)
    assert torch.equal(dense_positional_encoding(sam.prompt_encoder, (6, 10)), sam.prompt_encoder.pe_layer((6, 10)).unsqueeze(0))
    with torch.no_grad():
        batched = decode_single_mask(sam.mask_decoder, emb, pe, sparse, dense)
        for i in range(3):
            expected, _ = sam.mask_decoder(emb[i : i + 1], pe, sparse[i : i + 1], dense[i : i + 1], multimask_output=False)
            torch.testing.assert_close(batched[i : i + 1], expected, atol=1e-5, rtol=1e-5)


def test_vit_path_is_sam_image_encoder_when_injection_is_off(tiny_bert_model):
    """With injector gamma = 0 the ViT tokens are SAM's own: neck(ViT) equals ImageEncoderViT.forward."""
    model = build_refersam("tiny", tiny_bert_config(), seed=1)
    shake(model, seed=2)
    for block in model.vl_adapter.interactions:
        block.injector.gamma.data.zero_()
    encoder = model.vl_adapter.vis_model
    native = encoder.img_size
    captured = {}
    handle = encoder.neck.register_forward_hook(lambda module, args, out: captured.setdefault("neck", out))
    images, ids, mask = inputs(1, size=native)
    with torch.no_grad():
        model(images, ids, mask)
        expected = encoder(images)
    handle.remove()
    torch.testing.assert_close(captured["neck"], expected, atol=1e-5, rtol=1e-5)


def test_text_encoder_output_is_transformers_output(tiny_bert_model):
    _, ids, mask = inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(
            tiny_bert_model.encode_text(ids, mask), tiny_bert_model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        )


def test_sine_encoding_hand_fixture():
    pos = SinePositionalEncoding(2)(1, 2, torch.device("cpu"))  # y half then x half, sin / cos
    eps = 1e-6
    y = 1 / (1 + eps) * 2 * math.pi
    x = [1 / (2 + eps) * 2 * math.pi, 2 / (2 + eps) * 2 * math.pi]
    expected = torch.tensor(
        [[[math.sin(y), math.sin(y)]], [[math.cos(y), math.cos(y)]],
         [[math.sin(x[0]), math.sin(x[1])]], [[math.cos(x[0]), math.cos(x[1])]]]
    ).unsqueeze(0)  # fmt: skip
    torch.testing.assert_close(pos, expected.float(), atol=1e-6, rtol=0)


def test_attention_matches_sdpa_and_single_level_msa_equals_mha():
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 10, 16, 4)
    msa = MultiScaleAttention(12, 10, 16, 4, num_levels=1)
    msa.load_state_dict({**mha.state_dict(), **{k: v for k, v in msa.state_dict().items() if "level_weights" in k}})
    q, k = torch.randn(2, 5, 12), torch.randn(2, 7, 10)
    key_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    out = mha(q, k, k, key_mask=key_mask)
    heads = lambda x: x.view(2, -1, 4, 4).transpose(1, 2)
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        heads(mha.q_proj(q)), heads(mha.k_proj(k)), heads(mha.v_proj(k)), attn_mask=key_mask[:, None, None, :].bool()
    )
    torch.testing.assert_close(out, mha.out_proj(sdpa.transpose(1, 2).reshape(2, 5, 16)), atol=1e-6, rtol=1e-5)
    assert torch.equal(msa(q, k, k, [7]), mha(q, k, k))


@pytest.mark.slow
def test_official_key_layout_vit_b_bert_on_meta():
    with torch.device("meta"):
        model = build_refersam("vit_b", transformers.BertConfig())
    keys = model.state_dict().keys()
    assert len(keys) == 1048
    assert {key.split(".")[0] for key in keys} == {
        "text_encoder", "vl_adapter", "sam_prompt_encoder", "sam_mask_decoder", "mask_embedding", "mask_scaling",
        "sparse_embedding",
    }  # fmt: skip
    for key in ("vl_adapter.interactions.3.extra_vl_extractors.1.l2v_cross_attn.level_weights.weight",
                "vl_adapter.interactions.0.injector.attn.sampling_offsets.weight", "vl_adapter.spm.stem.7.weight",
                "vl_adapter.out_conv.3.bias", "vl_adapter.prompt_blocks.1.p2v_cross_attn.level_weights.bias",
                "vl_adapter.lang_proj.3.weight", "sparse_embedding.3.weight", "mask_embedding.2.bias"):  # fmt: skip
        assert key in keys, key
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes["vl_adapter.interactions.0.injector.attn.value_proj.weight"] == (384, 768)
    assert shapes["vl_adapter.lang_prompts.weight"] == (16, 768)
    assert shapes["vl_adapter.vis_model.pos_embed"] == (1, 64, 64, 768)
    assert not any(f"interactions.{i}.extra_" in key for i in range(3) for key in keys)


def test_checkpoint_loading_tolerates_version_buffers_and_refuses_others(tiny_bert_model, tmp_path):
    state = {key: value.clone() for key, value in tiny_bert_model.state_dict().items()}
    state["text_encoder.embeddings.position_ids"] = torch.arange(512)[None]
    model = build_refersam("tiny", tiny_bert_config(), seed=5)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pth")
    load_refersam_checkpoint(model, tmp_path / "ckpt.pth", sam_type="tiny")
    assert torch.equal(model.mask_scaling.weight, tiny_bert_model.mask_scaling.weight)
    del state["mask_scaling.bias"]
    with pytest.raises(InputError, match="mask_scaling"):
        load_refersam_checkpoint(model, state)
    with pytest.raises(InputError, match=r"refersam \(tiny\).*refersam \(vit_b\)"):
        load_refersam_checkpoint(model, state, sam_type="vit_b")
    sam_state = build_sam("tiny", seed=0).state_dict()
    with pytest.raises(InputError, match="bare SAM backbone"):
        load_refersam_checkpoint(model, sam_state)
    model.official_compat = True  # official loader: non-strict, warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_refersam_checkpoint(model, state)
    assert any("mask_scaling.bias" in str(w.message) for w in caught)


def test_sam_checkpoint_builds_start_point_by_prefix(tmp_path):
    sam = shake(build_sam("tiny", seed=3), seed=4)
    torch.save(sam.state_dict(), tmp_path / "sam.pth")
    model = build_refersam("tiny", tiny_bert_config(), sam_checkpoint=tmp_path / "sam.pth", seed=0)
    mapped = sam_state_to_refersam(sam.state_dict())
    own = model.state_dict()
    assert len(mapped) == len(sam.state_dict()) and all(torch.equal(own[key], value) for key, value in mapped.items())
    with pytest.raises(InputError, match="not a SAM key"):
        sam_state_to_refersam({"vl_adapter.level_embed": torch.zeros(1)})


def test_clip_text_is_frozen_and_uses_end_token():
    model = shake(build_refersam("tiny", tiny_clip_config(), seed=0))
    assert model.using_clip and not any(p.requires_grad for p in model.text_encoder.parameters())
    images, ids, mask = inputs(1)
    model.train()
    pred, coarse = model(images, ids, mask)
    (pred.mean() + coarse.mean()).backward()
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert model.vl_adapter.lang_prompts.weight.grad.abs().sum() > 0
    captured = {}
    model.eval()
    hooks = [
        model.vl_adapter.prompt_blocks[0].register_forward_pre_hook(lambda m, args: captured.update(tokens=args[0])),
        model.vl_adapter.lang_proj.register_forward_hook(lambda m, args, out: captured.update(words=out)),
    ]
    with torch.no_grad():
        model(images, ids, mask)
    for hook in hooks:
        hook.remove()
    end = int(mask.sum()) - 1  # the dense prompt token is the projected end-of-text token
    assert torch.equal(captured["tokens"][0, 0], captured["words"][0, end])
    assert not torch.equal(captured["tokens"][0, 0], captured["words"][0, 0])


def test_bert_text_is_trained_and_uses_first_token():
    model = shake(build_refersam("tiny", tiny_bert_config(), seed=0)).train()
    images, ids, mask = inputs(1)
    captured = {}
    hooks = [
        model.vl_adapter.prompt_blocks[0].register_forward_pre_hook(lambda m, args: captured.update(tokens=args[0])),
        model.vl_adapter.lang_proj.register_forward_hook(lambda m, args, out: captured.update(words=out)),
    ]
    pred, _coarse = model(images, ids, mask)
    for hook in hooks:
        hook.remove()
    assert torch.equal(captured["tokens"][0, 0], captured["words"][0, 0])  # first ([CLS]) token
    pred.mean().backward()
    assert model.text_encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_activation_checkpointing_gives_same_gradients():
    grads = []
    for enabled in (False, True):
        model = shake(build_refersam("tiny", tiny_bert_config(), seed=0)).train()
        model.set_activation_checkpointing(enabled)
        images, ids, mask = inputs(2)
        pred, coarse = model(images, ids, mask)
        (pred.square().mean() + coarse.mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        scale = grads[0][name].abs().max().item()
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5 * scale, rtol=1e-4, msg=name)


def test_official_compat_matches_default_in_fp32_and_mutates_dtype_only_in_compat(tiny_bert_model):
    images, ids, mask = inputs(1)
    with torch.no_grad():
        default, _ = tiny_bert_model(images, ids, mask)
        tiny_bert_model.official_compat = True
        try:
            compat, _ = tiny_bert_model(images, ids, mask)
        finally:
            tiny_bert_model.official_compat = False
    torch.testing.assert_close(default, compat, atol=1e-5, rtol=1e-5)
    for compat_flag in (False, True):
        model = build_refersam("tiny", tiny_bert_config(), seed=0, official_compat=compat_flag).to(torch.bfloat16)
        attn = model.vl_adapter.interactions[0].injector.attn
        with torch.no_grad():
            pred, _ = model(images.bfloat16(), ids, mask)
        assert torch.isfinite(pred).all()
        assert attn.value_proj.weight.dtype == (torch.float32 if compat_flag else torch.bfloat16)


def test_input_size_must_be_divisible_by_32(tiny_bert_model):
    images, ids, mask = inputs(1, size=144)
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny_bert_model(images, ids, mask)
