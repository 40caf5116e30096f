"""Per-pathway memory views, official memory selection and key weighting on real sam2 1.1.0 modules."""

import warnings

import pytest
import torch

from samkit.backbones.tiny import build_tiny_sam2
from samkit.longvideo.hooks import KeyWeightHook, MemoryCapture
from samkit.longvideo.memory import (
    TrackedFrames,
    key_token_weights,
    memory_scores,
    memory_view,
    rank_weights,
)
from samkit.longvideo.tree import PROMPT, TRACKED, Node

NUM_FRAMES = 40
PROMPT_FRAME = 0


@pytest.fixture(scope="module")
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny_sam2(seed=0, video=True)


def payload(model, value):
    """A memory entry whose features and pointer are the constant ``value`` (so we can find them)."""
    size = model.image_size // model.backbone_stride
    features = torch.full((1, model.mem_dim, size, size), float(value), dtype=torch.bfloat16)
    position = [torch.zeros(1, model.mem_dim, size, size)]
    return {"maskmem_features": features, "maskmem_pos_enc": position,
            "obj_ptr": torch.full((1, model.hidden_dim), float(value)),
            "object_score_logits": torch.tensor([[float(value)]])}


def remembered(model, count):
    """``count`` remembered nodes at frames 1..count (feature value = frame), object score = frame / 10."""
    prompt = Node(PROMPT_FRAME, None, PROMPT)
    nodes = []
    for frame in range(1, count + 1):
        nodes.append(Node(frame, nodes[-1] if nodes else prompt, TRACKED, object_score=frame / 10,
                          payload=payload(model, frame)))
    return nodes


def attend(model, frame_idx, view, reverse=False):
    """Run upstream's _prepare_memory_conditioned_features; capture the memory it builds."""
    captured = {}

    def grab(module, args, kwargs):
        captured.update(kwargs)

    handle = model.memory_attention.register_forward_pre_hook(grab, with_kwargs=True)
    size = model.image_size // model.backbone_stride
    feats = [torch.randn(size * size, 1, model.hidden_dim)]
    with torch.inference_mode():
        model._prepare_memory_conditioned_features(frame_idx, False, feats, feats, [(size, size)], view, NUM_FRAMES,
                                                   track_in_reverse=reverse)
    handle.remove()
    return captured


def decode(model, captured):
    """(spatial frame values in token order, pointer values in order) from the captured memory."""
    size = model.image_size // model.backbone_stride
    memory = captured["memory"][:, 0]  # [N, 64]
    pointer_tokens = captured["num_obj_ptr_tokens"]
    spatial = memory[: memory.shape[0] - pointer_tokens].reshape(-1, size * size, model.mem_dim)
    tokens_per_pointer = model.hidden_dim // model.mem_dim
    pointers = memory[memory.shape[0] - pointer_tokens:].reshape(-1, tokens_per_pointer * model.mem_dim)
    return [round(float(frame[0, 0])) for frame in spatial], [round(float(p[0])) for p in pointers]


@pytest.mark.parametrize("count", [1, 3, 6, 7, 12, 16])
@pytest.mark.parametrize("official", [False, True])
def test_rekeyed_view_gives_sam2long_selection(model, count, official):
    nodes = remembered(model, count)
    frame_idx = count + 1
    cond = {PROMPT_FRAME: payload(model, 100)}
    key_frame, view, scores = memory_view(nodes, frame_idx, False, cond, rekey=True, drop_oldest_pointer=official,
                                          num_frames=NUM_FRAMES)
    spatial, pointers = decode(model, attend(model, key_frame, view))
    # spatial: the prompt, then the last min(6, n) remembered frames oldest first (ranks 6..1)
    assert spatial == [100] + list(range(max(1, count - 5), count + 1))
    # pointers: the prompt, then the latest first; official drops the oldest (n - 1), fixed keeps min(15, n)
    kept = count - 1 if official else min(15, count)
    if official and count == 16:
        kept = 15
    assert pointers == [100] + list(range(count, count - kept, -1))
    # the temporal encoding is by rank: the k-th latest frame sits at slot t_pos = 7 - k
    size = model.image_size // model.backbone_stride
    memory_pos = attend(model, key_frame, view)["memory_pos"][:, 0]
    for position, frame in enumerate(spatial[1:], start=1):
        rank = count - frame + 1
        assert torch.equal(memory_pos[position * size * size], model.maskmem_tpos_enc[rank - 1, 0, 0])
    # key scores follow the same order
    frame_scores, pointer_scores, prompt_pointers = memory_scores(model, key_frame, view, scores, NUM_FRAMES,
                                                                  False, 10.0)
    assert frame_scores == [10.0] + [frame / 10 for frame in spatial[1:]]
    assert pointer_scores == [10.0] + [frame / 10 for frame in pointers[1:]]
    assert prompt_pointers == 1


def test_prompt_pointer_position_survives_rekeying(model):
    # the prompt pointer's temporal position is |t - prompt| in every keying (official: abs(frame_idx - s))
    nodes = remembered(model, 4)
    cond = {PROMPT_FRAME: payload(model, 100)}
    positions = []
    for official in (False, True):
        key_frame, view, _ = memory_view(nodes, 9, False, cond, rekey=True, drop_oldest_pointer=official,
                                         num_frames=NUM_FRAMES)
        captured = attend(model, key_frame, view)
        pointer_pos = captured["memory_pos"][-captured["num_obj_ptr_tokens"]:, 0]
        positions.append(pointer_pos[0])
    assert torch.equal(positions[0], positions[1])


def test_reverse_view_uses_later_frames(model):
    nodes = remembered(model, 3)  # remembered frames, re-keyed to t+1, t+2, t+3 when tracking backwards
    cond = {30: payload(model, 100)}
    key_frame, view, _ = memory_view(nodes, 20, True, cond, rekey=True, drop_oldest_pointer=False,
                                     num_frames=NUM_FRAMES)
    assert sorted(view["non_cond_frame_outputs"]) == [21, 22, 23]
    spatial, pointers = decode(model, attend(model, key_frame, view, reverse=True))
    assert spatial == [100, 1, 2, 3] and pointers == [100, 3, 2, 1]


def test_real_keys_without_filtering(model):
    nodes = remembered(model, 3)
    key_frame, view, _ = memory_view(nodes, 4, False, {}, rekey=False, drop_oldest_pointer=True, num_frames=10)
    assert key_frame == 4 and sorted(view["non_cond_frame_outputs"]) == [1, 2, 3]


def test_rank_weights_by_hand():
    levels = torch.linspace(0.95, 1.05, 4)
    weights = rank_weights([10.0, -1.0, 3.0, 0.5], 0.95, 1.05)
    assert torch.equal(weights, torch.stack([levels[3], levels[0], levels[2], levels[1]]))
    assert torch.equal(rank_weights([2.0, 2.0], 0.9, 1.1), torch.linspace(0.9, 1.1, 2))  # ties: earlier lower
    assert rank_weights([5.0], 0.95, 1.05).tolist() == [pytest.approx(0.95)]  # linspace with one step
    assert key_token_weights([10.0], [10.0, 1.0], 4, 4, (0.95, 1.05)) is None
    tokens = key_token_weights([10.0, 0.2], [10.0], 3, 2, (0.95, 1.05))
    assert tokens.tolist() == pytest.approx([1.05] * 3 + [0.95] * 3 + [0.95] * 2)


def test_key_weight_hook_scales_cross_attention_keys(model):
    attention = model.memory_attention.layers[0].cross_attn_image  # a real RoPEAttention
    size = model.image_size // model.backbone_stride
    generator = torch.Generator().manual_seed(0)
    frames, pointer_tokens = 2, 8
    q = torch.randn(1, size * size, model.hidden_dim, generator=generator)
    k = torch.randn(1, frames * size * size + pointer_tokens, model.mem_dim, generator=generator)
    v = torch.randn(1, frames * size * size + pointer_tokens, model.mem_dim, generator=generator)
    weights = key_token_weights([10.0, -0.5], [10.0, 2.0], size * size, 4, (0.95, 1.05))
    by_hand_k = k.clone()
    by_hand_k[:, : size * size] *= 1.05
    by_hand_k[:, size * size: 2 * size * size] *= 0.95
    by_hand_k[:, 2 * size * size: 2 * size * size + 4] *= 1.05
    by_hand_k[:, 2 * size * size + 4:] *= 0.95
    hook = KeyWeightHook(model.memory_attention)
    with torch.inference_mode():
        plain = attention(q=q, k=k, v=v, num_k_exclude_rope=pointer_tokens)
        expected = attention(q=q, k=by_hand_k, v=v, num_k_exclude_rope=pointer_tokens)
        with hook.weights(weights):
            weighted = attention(q=q, k=k, v=v, num_k_exclude_rope=pointer_tokens)
        with hook.weights(weights[:-1]), pytest.raises(RuntimeError, match="memory tokens"):
            attention(q=q, k=k, v=v, num_k_exclude_rope=pointer_tokens)
        after = attention(q=q, k=k, v=v, num_k_exclude_rope=pointer_tokens)
    hook.remove()
    assert torch.equal(weighted, expected)
    assert not torch.equal(weighted, plain)
    assert torch.equal(after, plain)  # inactive outside the context


def test_key_weight_hook_takes_one_row_per_batch_entry(model):
    attention = model.memory_attention.layers[0].cross_attn_image
    size = model.image_size // model.backbone_stride
    generator = torch.Generator().manual_seed(1)
    tokens = 2 * size * size + 4
    q = torch.randn(2, size * size, model.hidden_dim, generator=generator)
    k = torch.randn(2, tokens, model.mem_dim, generator=generator)
    v = torch.randn(2, tokens, model.mem_dim, generator=generator)
    rows = torch.stack([key_token_weights([10.0, -0.5], [1.0], size * size, 4, (0.95, 1.05)),
                        key_token_weights([-0.5, 10.0], [1.0], size * size, 4, (0.9, 1.1))])
    hook = KeyWeightHook(model.memory_attention)
    with torch.inference_mode():
        with hook.weights(rows):
            batched = attention(q=q, k=k, v=v, num_k_exclude_rope=4)
        by_hand = attention(q=q, k=k * rows[:, :, None], v=v, num_k_exclude_rope=4)
        with hook.weights(rows[:1]), pytest.raises(RuntimeError, match="batch entries"):
            attention(q=q, k=k, v=v, num_k_exclude_rope=4)
    hook.remove()
    assert torch.equal(batched, by_hand)


def test_memory_capture_returns_upstream_memory_without_attending(model):
    nodes = remembered(model, 5)
    cond = {PROMPT_FRAME: payload(model, 100)}
    key_frame, view, _ = memory_view(nodes, 6, False, cond, rekey=True, drop_oldest_pointer=False,
                                     num_frames=NUM_FRAMES)
    expected = attend(model, key_frame, view)  # what upstream hands to memory attention
    attended = []
    handle = model.memory_attention.register_forward_hook(lambda module, args, output: attended.append(output))
    capture = MemoryCapture(model.memory_attention)
    size = model.image_size // model.backbone_stride
    feats = [torch.randn(size * size, 1, model.hidden_dim)]
    with torch.inference_mode():
        captured = capture.capture(model._prepare_memory_conditioned_features, key_frame, False, feats, feats,
                                   [(size, size)], view, NUM_FRAMES)
        with pytest.raises(RuntimeError, match="not reached"):  # a call that never gets to memory attention
            capture.capture(lambda: None)
        model._prepare_memory_conditioned_features(key_frame, False, feats, feats, [(size, size)], view, NUM_FRAMES)
    capture.remove()
    handle.remove()
    assert len(attended) == 1  # only the call after remove() reached memory attention
    assert captured["curr"][0] is feats[0]
    assert captured["num_obj_ptr_tokens"] == expected["num_obj_ptr_tokens"] > 0
    assert torch.equal(captured["memory"], expected["memory"])
    assert torch.equal(captured["memory_pos"], expected["memory_pos"])


def test_tracked_frames_mapping():
    tracked = TrackedFrames(5)
    assert 2 not in tracked and len(tracked) == 0
    tracked[2] = {"reverse": False}
    tracked[4] = {"reverse": True}
    assert tracked[2] == {"reverse": False} and tracked[4] == {"reverse": True}
    assert list(tracked) == [2, 4] and 7 not in tracked and -1 not in tracked
    assert tracked.pop(2, None) == {"reverse": False} and tracked.pop(3, None) is None
    with pytest.raises(KeyError):
        tracked[3]
    tracked.clear()
    assert len(tracked) == 0


def test_official_prompt_only_pointer_weight_is_rounded_through_bf16():
    # official: a pointer score list holding only the prompt's bf16 constant stays bf16, so the single
    # level linspace(0.95, 1.05, 1) = 0.95 becomes bf16(0.95) = 0.94921875
    tokens = key_token_weights([10.0, 0.2], [10.0], 3, 2, (0.95, 1.05), bf16_pointer_levels=True)
    assert tokens[-2:].tolist() == [0.94921875, 0.94921875]
    assert tokens[:6].tolist() == pytest.approx([1.05] * 3 + [0.95] * 3)
    exact = key_token_weights([10.0, 0.2], [10.0], 3, 2, (0.95, 1.05))
    assert exact[-1].item() == torch.tensor(0.95).item()
