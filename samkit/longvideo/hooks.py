"""Forward hooks that let the tracker reach inside the unmodified ``sam2`` 1.1.0 modules.

The hooks sit on the shared model, but what they carry (the key weights to apply, whether to stop before
memory attention, the captured output tokens) is per thread and per call: it is set by a context or a call
in the thread that runs the model and cleared right after, so sessions tracking in several threads through
one model never see each other's values.

* ``KeyWeightHook`` (SAM2Long's rank-based key modulation) multiplies the cross-attention key *input*
  (memory + position, before ``k_proj``) of every memory token by a per-frame / per-pointer weight: a
  forward pre-hook on each ``RoPEAttention`` cross-attention layer scales its ``k`` argument
  (bit-identical to the official in-layer multiplication).
* ``MemoryCapture`` stops memory conditioning right before memory attention and returns what upstream
  assembled, so several pathways can go through attention as one batch.
* ``TokenCapture`` keeps the mask decoder's three output tokens, which upstream turns into an object pointer
  for the best candidate only (SAM2Long needs one per kept candidate).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class KeyWeightHook:
    """Scales the ``k`` input of every memory-attention cross-attention layer by per-token weights.

    Weights are ``[N]`` (one pathway, or the same for the whole batch) or ``[B, N]`` (one row per
    batch entry). Inactive (a no-op) outside ``with hook.weights(w):`` in the calling thread.
    ``remove()`` detaches it.
    """

    def __init__(self, memory_attention: torch.nn.Module) -> None:
        self._local = threading.local()
        self._handles = [
            layer.cross_attn_image.register_forward_pre_hook(self._scale_keys, with_kwargs=True)
            for layer in memory_attention.layers
        ]

    def _scale_keys(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        weights = getattr(self._local, "weights", None)
        if weights is None:
            return None
        if args:
            raise RuntimeError("the key-weight hook expects RoPEAttention called with keywords q=, k=, v= (sam2 1.1.0)")
        keys = kwargs["k"]  # [B, N, C_kv]
        if weights.shape[-1] != keys.shape[1] or (weights.dim() == 2 and weights.shape[0] != keys.shape[0]):
            raise RuntimeError(
                f"key weights {tuple(weights.shape)} do not cover the {keys.shape[1]} memory tokens of "
                f"{keys.shape[0]} batch entries; the sam2 memory layout differs from 1.1.0"
            )
        kwargs = dict(kwargs)
        kwargs["k"] = keys * weights.to(device=keys.device, dtype=keys.dtype)[..., None]
        return args, kwargs

    @contextmanager
    def weights(self, weights: torch.Tensor | None) -> Iterator[None]:
        """Apply ``weights`` to the memory attention calls made inside this block by this thread."""
        self._local.weights = weights
        try:
            yield
        finally:
            self._local.weights = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class _MemoryAssembled(Exception):
    """Raised by ``MemoryCapture`` to leave upstream code right before memory attention."""

    def __init__(self, inputs: dict[str, Any]) -> None:
        super().__init__("memory assembled")
        self.inputs = inputs


class MemoryCapture:
    """Stops ``SAM2Base._prepare_memory_conditioned_features`` just before memory attention and returns the
    memory it assembled, so that several pathways' memories can then go through attention as one batch.

    Upstream builds the memory (frame selection, temporal encodings, pointers); ``capture`` returns the
    keyword arguments it passes to ``memory_attention`` (``curr``, ``curr_pos``, ``memory [N, B, C]``,
    ``memory_pos``, ``num_obj_ptr_tokens``). Inactive outside ``capture`` in the calling thread.
    """

    def __init__(self, memory_attention: torch.nn.Module) -> None:
        self._local = threading.local()
        self._handle = memory_attention.register_forward_pre_hook(self._stop, with_kwargs=True)

    def _stop(self, module: Any, args: tuple, kwargs: dict) -> None:
        if getattr(self._local, "active", False):
            if args:
                raise RuntimeError("MemoryCapture expects memory_attention called with keywords (sam2 1.1.0)")
            raise _MemoryAssembled(kwargs)

    def capture(self, prepare: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Run ``prepare(*args)`` (``_prepare_memory_conditioned_features``) up to memory attention."""
        self._local.active = True
        try:
            prepare(*args)
        except _MemoryAssembled as assembled:
            return assembled.inputs
        finally:
            self._local.active = False
        raise RuntimeError("memory attention was not reached: the frame has no memory to attend to")

    def remove(self) -> None:
        self._handle.remove()


class TokenCapture:
    """Keeps the SAM mask decoder's output tokens ``[B, 3, C]`` of the last decoder call made by ``run``."""

    def __init__(self, mask_decoder: torch.nn.Module) -> None:
        self._local = threading.local()
        self._handle = mask_decoder.register_forward_hook(self._record)

    def _record(self, module: Any, inputs: Any, outputs: tuple) -> None:
        if getattr(self._local, "active", False):
            self._local.tokens = outputs[2]  # sam_tokens_out

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, torch.Tensor | None]:
        """``(function(*args, **kwargs), output tokens of its last mask-decoder call or None)``."""
        self._local.active, self._local.tokens = True, None
        try:
            result = function(*args, **kwargs)
            return result, self._local.tokens
        finally:
            self._local.active, self._local.tokens = False, None

    def remove(self) -> None:
        self._handle.remove()
