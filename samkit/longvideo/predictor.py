"""The SAM2Long tracking engine, a plug-in over an unmodified ``sam2==1.1.0`` ``SAM2VideoPredictor``.

``TreeTracker`` keeps sam2's own ``inference_state`` (so ``add_new_points_or_box`` / ``add_new_mask``
/ ``remove_object`` / ``reset_state`` work unchanged) and replaces ``propagate_in_video`` with a
frame-major loop:

1. the image encoder runs once per frame for all objects (sam2's feature cache);
2. for every object, every *distinct* live pathway node runs memory attention + SAM heads once
   (``SAM2Base._track_step`` on the pathway's memory view, see ``memory.py``), giving 3 candidates;
   with ``TreeConfig.batch_pathways`` the distinct nodes go through as one batch instead (upstream
   assembles each memory, pathways of equal memory length share a memory-attention call)
   (``expansion.py``);
3. IoUs and object scores of the whole frame reach the host in one transfer (one sync per frame);
4. the tree (``tree.select_pathways``) picks the survivors; each distinct survivor is encoded into
   memory once (``SAM2Base._encode_new_memory``; one batch with ``batch_pathways``) (``selection.py``);
5. a frame is yielded as soon as it is final: when every live pathway of every object passes
   through the same node there. This equals backtracking the best pathway at the end of the video,
   unless an object's pathways go ``TreeConfig.max_pending_frames`` frames without merging
   (``propagation.py``).

With ``TreeConfig.sam2()`` (one pathway, no filtering, no weighting, corrections as the model says) every
call matches what ``SAM2VideoPredictor`` runs, so masks are bit-identical to SAM 2.

Memory stays bounded: frames are decoded on demand (``LazyFrames``), committed nodes are cut from
their parents so only pathway memories reference them, and each object's sam2 ``non_cond_frame_outputs``
keeps only the last ``retention`` committed frames (enough for SAM 2's memory window). A prompt added
later on a frame whose neighbours were evicted is conditioned on the prompt frames and the retained
outputs only.

Threads: a tracker holds no per-video state (that is the ``inference_state`` of each session) and no
per-step state (the hooks keep theirs per thread and per call, and prompts set sam2's flags under a
lock), so one tracker and one model serve sessions in several threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from samkit.errors import InputError
from samkit.longvideo.config import TreeConfig
from samkit.longvideo.expansion import ExpansionMixin
from samkit.longvideo.frames import LazyFrames
from samkit.longvideo.hooks import KeyWeightHook, MemoryCapture, TokenCapture
from samkit.longvideo.prompting import MODEL_FLAGS_LOCK, PromptingMixin
from samkit.longvideo.propagation import PropagationMixin
from samkit.longvideo.selection import SelectionMixin

if TYPE_CHECKING:
    from sam2.sam2_video_predictor import SAM2VideoPredictor

__all__ = ["LazyFrames", "TreeTracker"]

MULTIMASK_FLAGS = ("multimask_output_in_sam", "multimask_output_for_tracking", "use_multimask_token_for_obj_ptr",
                   "pred_obj_scores")


def _connected_components_available() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


class TreeTracker(PromptingMixin, PropagationMixin, ExpansionMixin, SelectionMixin):
    """SAM2Long tracking over a ``SAM2VideoPredictor`` (see module docstring)."""

    def __init__(self, model: SAM2VideoPredictor, tree: TreeConfig) -> None:
        self.model = model
        self.tree = tree
        if tree.num_pathways > 1:
            self._check_multimask(model)
        self.filters_memory = tree.filters_memory
        stride = model.memory_temporal_stride_for_eval
        window = max(model.max_obj_ptrs_in_encoder - 1, (model.num_maskmem - 1) * stride)
        self.history_limit = tree.max_valid_scan if self.filters_memory else max(tree.max_valid_scan, window)
        self.retention = max(self.history_limit, window) + 1
        """Committed outputs kept per object in sam2's ``non_cond_frame_outputs`` (SAM 2's memory window)."""
        self.tokens_per_pointer = model.hidden_dim // model.mem_dim if model.mem_dim < model.hidden_dim else 1
        self._key_hook = KeyWeightHook(model.memory_attention) if tree.weights_keys else None
        # the official code never fills holes; SAM 2 does when its CUDA extension is built
        with MODEL_FLAGS_LOCK:  # not while a prompt in another thread has the flag changed
            fill_hole_area = model.fill_hole_area
        self._fill_holes = fill_hole_area > 0 and _connected_components_available() and not tree.official_compat
        self._token_capture = TokenCapture(model.sam_mask_decoder) if tree.num_pathways > 1 else None
        batching = tree.batch_pathways and tree.num_pathways > 1
        self._memory_capture = MemoryCapture(model.memory_attention) if batching else None
        self._batch_memory_encoder = batching and not model.non_overlap_masks_for_mem_enc
        """sam2's ``non_overlap_masks_for_mem_enc`` treats a batch as different objects of one frame, so
        candidates of one object must then be encoded one by one."""

    @staticmethod
    def _check_multimask(model: Any) -> None:
        missing = [flag for flag in MULTIMASK_FLAGS if not getattr(model, flag, False)]
        if missing or not model.multimask_min_pt_num <= 0 <= model.multimask_max_pt_num:
            raise InputError(
                "SAM2Long needs a backbone whose tracking step outputs 3 candidate masks with IoUs, object "
                f"scores and per-candidate pointers; this config lacks {missing or ['multimask_min_pt_num: 0']}. "
                "Use a sam2 / sam2.1 config, or TreeConfig.sam2() (one pathway)"
            )

    def close(self) -> None:
        """Detach the hooks from the model (idempotent)."""
        for attribute in ("_key_hook", "_token_capture", "_memory_capture"):
            hook = getattr(self, attribute)
            if hook is not None:
                hook.remove()
                setattr(self, attribute, None)
