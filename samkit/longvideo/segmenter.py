"""``LongVideoSegmenter``: SAM2Long (or plain SAM 2) video object segmentation behind ``predict``.

``predict(video, prompt=None, *, prompts=None)`` streams a ``VideoResult``: each ``FrameResult`` is yielded as soon as the
memory tree has made it final. ``session(video)`` gives interactive control in the style of sam2's
``SAM2VideoPredictor``: prompts on any frame, corrections after propagation, objects that appear
late, forward / reverse propagation, object removal, reset.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from samkit.api import Segmenter
from samkit.building import prepare
from samkit.constants import DEFAULT_SAM2_BACKBONE
from samkit.errors import InputError
from samkit.longvideo.config import TREE_PRESETS, TreeConfig
from samkit.longvideo.session import LongVideoSession
from samkit.prompts import Box, Mask, Points, normalize_prompts
from samkit.registry import HeadSpec, get_spec

if TYPE_CHECKING:
    import torch

    from samkit.longvideo.predictor import TreeTracker
    from samkit.results import VideoResult

ALLOWED_PROMPTS = (Points, Box, Mask)
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
    spec: HeadSpec | str,
    *,
    backbone: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    backbone_checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    tree: TreeConfig | str | Mapping[str, Any] | None = None,
    image_size: int | None = None,
    seed: int = 0,
    apply_postprocessing: bool | None = None,
) -> LongVideoSegmenter:
    """Registry builder of the ``sam2long`` and ``sam2`` heads (``spec`` or its name).

    ``backbone``: a SAM 2 / 2.1 registry name (default ``sam2.1-hiera-tiny``), a config of the ``sam2``
    package (``configs/sam2.1/sam2.1_hiera_l.yaml``), ``tiny-sam2``, or a YAML file. ``checkpoint`` is
    the SAM 2 file (both heads are training-free); with ``checkpoint=None`` the weights are a seeded
    random init and ``config["trained"]`` is False.
    ``apply_postprocessing``: sam2's video post-processing overrides (``build_sam2_video_predictor``'s
    default, on); default on, except with ``official_compat``, where it is off as in the official
    ``tools/vos_inference.py`` (without ``--apply_postprocessing``).
    """
    from samkit.backbones.sam2_models import build_sam2_model, resolve_sam2_config

    spec = get_spec(spec) if isinstance(spec, str) else spec
    name = spec.name
    if name not in HEAD_DEFAULT_TREES:
        raise InputError(f"build_longvideo_segmenter builds {', '.join(HEAD_DEFAULT_TREES)}, not {name!r}")
    if backbone_checkpoint is not None:
        raise InputError(f"{name!r} is training-free: its weights are the SAM 2 backbone's, so pass them as "
                         "checkpoint=, not backbone_checkpoint=")
    if name == "sam2" and tree is not None:
        raise InputError("'sam2' is plain SAM 2 (TreeConfig.sam2()); to set a memory tree use samkit.load('sam2long', "
                         "tree=...)")
    tree_config = resolve_tree(tree, HEAD_DEFAULT_TREES[name]())
    if apply_postprocessing is None:
        apply_postprocessing = not tree_config.official_compat
    backbone = str(spec.default_backbone or DEFAULT_SAM2_BACKBONE) if backbone is None else backbone
    _, backbone_spec = resolve_sam2_config(backbone)
    plan = prepare(spec, device=device, checkpoint=checkpoint, seed=seed,
                   known=backbone_spec if backbone_spec is not None else ())
    model = build_sam2_model(backbone, image_size=image_size, checkpoint=plan.checkpoint, device=plan.device,
                             video=True, apply_postprocessing=bool(apply_postprocessing),
                             seed=None if plan.trained else seed)
    config = {
        "name": name,
        "backbone": backbone,
        "image_size": int(model.image_size),
        **plan.config(),
        "tree": dataclasses.asdict(tree_config),
        "apply_postprocessing": bool(apply_postprocessing),
    }
    return LongVideoSegmenter(model, tree_config, config, plan.device, spec=spec)


class LongVideoSegmenter(Segmenter):
    """Track objects through a video with SAM2Long's memory tree over a SAM 2 video model.

    ``tree`` (a ``TreeConfig``) picks the method: ``TreeConfig.paper()`` (SAM2Long), ``.official()``
    (with the official code's quirks) or ``.sam2()`` (exactly SAM 2). The SAM 2 weights are shared by
    every session and read-only; each session owns its tracking state (see ``Segmenter``).
    """

    def __init__(self, model: Any, tree: TreeConfig, config: dict[str, Any], device: torch.device,
                 spec: HeadSpec | None = None) -> None:
        from samkit.longvideo.predictor import TreeTracker

        self.model = model
        self.tree = tree
        self.config = config
        self.device = device
        self.spec = get_spec(config.get("name", "sam2long")) if spec is None else spec
        self.tracker: TreeTracker = TreeTracker(model, tree)
        self._sessions: weakref.WeakSet[LongVideoSession] = weakref.WeakSet()

    def session(self, video: Any, offload_state_to_cpu: bool = False) -> LongVideoSession:
        """An interactive tracking session over ``video`` (a folder of frames, a video file or a list)."""
        self._ensure_open()
        session = LongVideoSession(self.tracker, video, offload_state_to_cpu=offload_state_to_cpu)
        self._sessions.add(session)
        return session

    def predict(
        self,
        inputs: Any,
        prompt: PromptInput | None = None,
        *,
        prompts: Mapping[int, PromptInput] | None = None,
        reverse: bool = False,
        start_frame: int | None = None,
        max_frames: int | None = None,
    ) -> VideoResult:
        """Segment and track the prompted objects through the video ``inputs``.

        ``prompt``: object 1's prompt(s); ``prompts``: ``{obj_id: Points | Box | Mask | [several]}``
        (each prompt names its frame). Tracking starts at ``start_frame`` (default: the
        earliest prompt frame, or the latest one with ``reverse=True``) and covers at most
        ``max_frames`` frames counting the start frame. Returns a streaming ``VideoResult``: masks at
        the video's resolution, each frame yielded once final, and no pixel in two objects (SAM 2's
        non-overlap rule: a pixel goes to the object with the highest logit). An object is reported
        from its first prompt onwards (in the propagation direction).
        """
        from samkit.results import VideoResult

        self._ensure_open()
        by_object = normalize_prompts(prompt, prompts, ALLOWED_PROMPTS, head=self.spec.name)
        if not by_object:
            raise InputError("predict needs at least one prompt: prompts={obj_id: samkit.Mask(...) | Points | Box}")
        session = self.session(inputs)
        for obj_id, object_prompts in by_object.items():
            session.add_prompt(obj_id, object_prompts)
        frames = session.propagate(reverse=reverse, start_frame=start_frame, max_frames=max_frames)
        _, _, count = session.plan(reverse, start_frame, max_frames)
        source = session.video
        return VideoResult(frames, height=source.height, width=source.width, num_frames=count,
                           fps=source.fps, video=source, frame_names=source.frame_names)

    def _release(self) -> None:
        for session in list(self._sessions):
            close = getattr(session, "close", None)
            if close is not None:
                close()
        self._sessions.clear()
