"""``LongVideoSegmenter``: SAM2Long (or plain SAM 2) video object segmentation behind ``predict``.

``predict(video, prompts)`` streams a ``VideoResult``: each ``FrameResult`` is yielded as soon as the
memory tree has made it final. ``session(video)`` gives interactive control in the style of sam2's
``SAM2VideoPredictor``: prompts on any frame, corrections after propagation, objects that appear
late, forward / reverse propagation, object removal, reset.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from samkit.api import Segmenter, resolve_device
from samkit.errors import InputError
from samkit.longvideo.config import TREE_PRESETS, TreeConfig
from samkit.prompts import Box, Mask, Points

if TYPE_CHECKING:
    import torch

    from samkit.longvideo.predictor import TreeTracker
    from samkit.results import VideoResult

DEFAULT_BACKBONE = "sam2.1-hiera-tiny"
"""Smallest official SAM 2.1 model: the sensible default on a laptop CPU (pass a bigger one on GPU)."""
HEAD_DEFAULT_TREES = {"sam2long": TreeConfig.paper, "sam2": TreeConfig.sam2}

PromptInput = Points | Box | Mask | Sequence[Points | Box | Mask]


def resolve_tree(tree: TreeConfig | str | Mapping[str, Any] | None, default: TreeConfig) -> TreeConfig:
    """A ``TreeConfig`` from an instance, a preset name (paper / official / sam2) or a dict of fields."""
    if tree is None:
        return default
    if isinstance(tree, TreeConfig):
        return tree
    if isinstance(tree, str):
        if tree not in TREE_PRESETS:
            raise InputError(f"unknown tree preset {tree!r}; choose one of {', '.join(TREE_PRESETS)} or a TreeConfig")
        return TREE_PRESETS[tree]()
    if isinstance(tree, Mapping):
        fields = {field.name for field in dataclasses.fields(TreeConfig)}
        unknown = sorted(set(tree) - fields)
        if unknown:
            raise InputError(f"unknown TreeConfig field(s) {unknown}; fields: {', '.join(sorted(fields))}")
        values = dict(tree)
        if "key_weight_range" in values:
            values["key_weight_range"] = tuple(values["key_weight_range"])
        return TreeConfig(**values)
    raise InputError(f"tree must be a TreeConfig, a preset name or a dict, got {type(tree).__name__}")


def build_longvideo_segmenter(
    name: str,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    backbone: str | None = None,
    tree: TreeConfig | str | Mapping[str, Any] | None = None,
    image_size: int | None = None,
    seed: int = 0,
    apply_postprocessing: bool | None = None,
    **unknown: Any,
) -> LongVideoSegmenter:
    """Registry builder of the ``sam2long`` and ``sam2`` heads.

    ``backbone``: a SAM 2 / 2.1 registry name (default ``sam2.1-hiera-tiny``), a config of the ``sam2``
    package (``configs/sam2.1/sam2.1_hiera_l.yaml``), ``tiny-sam2``, or a YAML file. With
    ``checkpoint=None`` the weights are a seeded random init and ``config["trained"]`` is False.
    ``apply_postprocessing``: sam2's video post-processing overrides (``build_sam2_video_predictor``'s
    default, on); default on, except with ``official_compat``, where it is off as in the official
    ``tools/vos_inference.py`` (without ``--apply_postprocessing``).
    """
    from samkit.backbones.sam2_models import build_sam2_model, resolve_sam2_config
    from samkit.checkpoints import warn_untrained

    if unknown:
        raise InputError(f"unknown option(s) {sorted(unknown)} for {name!r}; accepted: checkpoint, device, "
                         "backbone, tree, image_size, seed, apply_postprocessing")
    if name not in HEAD_DEFAULT_TREES:
        raise InputError(f"build_longvideo_segmenter builds {', '.join(HEAD_DEFAULT_TREES)}, not {name!r}")
    if name == "sam2" and tree is not None:
        raise InputError("'sam2' is plain SAM 2 (TreeConfig.sam2()); to set a memory tree use samkit.load('sam2long', "
                         "tree=...)")
    tree_config = resolve_tree(tree, HEAD_DEFAULT_TREES[name]())
    if apply_postprocessing is None:
        apply_postprocessing = not tree_config.official_compat
    backbone = DEFAULT_BACKBONE if backbone is None else backbone
    _, spec = resolve_sam2_config(backbone)
    target = resolve_device(device)
    resolved = None
    if checkpoint is not None:
        if spec is not None:
            from samkit.hub import resolve_checkpoint

            resolved = resolve_checkpoint(checkpoint, spec)
        else:
            resolved = checkpoint
    model = build_sam2_model(backbone, image_size=image_size, checkpoint=resolved, device=target, video=True,
                             apply_postprocessing=bool(apply_postprocessing),
                             seed=seed if resolved is None else None)
    if resolved is None:
        warn_untrained(name)
    config = {
        "name": name,
        "backbone": backbone,
        "image_size": int(model.image_size),
        "checkpoint": None if resolved is None else str(resolved),
        "trained": resolved is not None,
        "seed": seed if resolved is None else None,
        "tree": dataclasses.asdict(tree_config),
        "apply_postprocessing": bool(apply_postprocessing),
    }
    return LongVideoSegmenter(model, tree_config, config, target)


class LongVideoSegmenter(Segmenter):
    """Track objects through a video with SAM2Long's memory tree over a SAM 2 video model.

    ``tree`` (a ``TreeConfig``) picks the method: ``TreeConfig.paper()`` (SAM2Long), ``.official()``
    (with the official code's quirks) or ``.sam2()`` (exactly SAM 2).
    """

    def __init__(self, model: Any, tree: TreeConfig, config: dict[str, Any], device: torch.device) -> None:
        from samkit.longvideo.predictor import TreeTracker

        self.model = model
        self.tree = tree
        self.config = config
        self.device = device
        self.tracker: TreeTracker = TreeTracker(model, tree)

    def session(self, video: Any, offload_state_to_cpu: bool = False) -> LongVideoSession:
        """An interactive tracking session over ``video`` (a folder of frames, a video file or a list)."""
        return LongVideoSession(self.tracker, video, offload_state_to_cpu=offload_state_to_cpu)

    def predict(
        self,
        video: Any,
        prompts: Mapping[int, PromptInput] | None = None,
        prompt: PromptInput | None = None,
        *,
        reverse: bool = False,
        start_frame: int | None = None,
        max_frames: int | None = None,
    ) -> VideoResult:
        """Segment and track the prompted objects through ``video``.

        ``prompts``: ``{obj_id: Points | Box | Mask | [several]}`` (each prompt names its frame;
        ``prompt=`` is shorthand for object 1). Tracking starts at ``start_frame`` (default: the
        earliest prompt frame, or the latest one with ``reverse=True``) and covers at most
        ``max_frames`` frames counting the start frame. Returns a streaming ``VideoResult``: masks at
        the video's resolution, each frame yielded once final, and no pixel in two objects (SAM 2's
        non-overlap rule: a pixel goes to the object with the highest logit). An object is reported
        from its first prompt onwards (in the propagation direction).
        """
        from samkit.results import VideoResult

        if prompt is not None:
            if prompts is not None:
                raise InputError("give either prompt= (object 1) or prompts={obj_id: ...}, not both")
            prompts = {1: prompt}
        if not prompts:
            raise InputError("predict needs at least one prompt: prompts={obj_id: samkit.Mask(...) | Points | Box}")
        if not isinstance(prompts, Mapping):
            raise InputError(f"prompts must be a dict {{obj_id: prompt}}, got {type(prompts).__name__}")
        session = self.session(video)
        for obj_id, object_prompts in prompts.items():
            session.add_prompt(obj_id, object_prompts)
        frames = session.propagate(reverse=reverse, start_frame=start_frame, max_frames=max_frames)
        _, _, count = session.plan(reverse, start_frame, max_frames)
        source = session.video
        return VideoResult(frames, height=source.height, width=source.width, num_frames=count,
                           fps=source.fps, video=source, frame_names=source.frame_names)


from samkit.longvideo.session import LongVideoSession  # re-exported: the session has its own module
