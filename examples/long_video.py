# %% [markdown]
# # Long-video object segmentation with SAM2Long
#
# Track two objects through a generated video in which one passes in front of the other, look at the
# masks, and score them with J&F against the known ground truth.
#
# Without a checkpoint this runs on a tiny randomly initialised SAM 2, so the pipeline is real but
# the masks are not meaningful. Set `CHECKPOINT` (and `BACKBONE`) for real weights, e.g.
# `BACKBONE, CHECKPOINT = "sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny"`.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import samkit
from samkit.io.masks import write_palette_png
from samkit.io.overlay import overlay_masks
from samkit.longvideo import TreeConfig
from samkit.metrics.vos import evaluate
from samkit.samples import synthetic_video

BACKBONE = os.environ.get("SAMKIT_EXAMPLE_BACKBONE", "tiny-sam2")
CHECKPOINT = os.environ.get("SAMKIT_EXAMPLE_CHECKPOINT") or None
WORK = Path(os.environ.get("SAMKIT_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="samkit_long_video_"))

# %% [markdown]
# ## A video with an occlusion
# A red disk moves right while a blue square moves left and passes in front of it. The video is
# written as a folder of JPEG frames, the layout of DAVIS and SA-V.

# %%
sample = synthetic_video(num_frames=12)
frames_dir = WORK / "JPEGImages" / "occlusion"
frames_dir.mkdir(parents=True, exist_ok=True)
for index, frame in enumerate(sample.frames):
    Image.fromarray(frame).save(frames_dir / f"{index:05d}.jpg", quality=95)
print(f"{sample.num_frames} frames of {sample.frames.shape[2]}x{sample.frames.shape[1]} in {frames_dir}")

# %% [markdown]
# ## Track both objects from their first-frame masks
# `predict` streams: each `FrameResult` is yielded as soon as every pathway of the memory tree agrees
# on it, and equals what backtracking the best pathway at the end of the video would give.

# %%
tracker = samkit.load("sam2long", backbone=BACKBONE, checkpoint=CHECKPOINT, tree=TreeConfig.paper(), device="cpu")
prompts = {obj_id: samkit.Mask(masks[0], frame=0) for obj_id, masks in sample.masks.items()}
result = tracker.predict(frames_dir, prompts=prompts)
frames = result.collect()
for frame in frames[:3]:
    print(frame.frame_idx, {obj_id: int(mask.sum()) for obj_id, mask in frame.masks.items()})

# %% [markdown]
# ## Look at the masks
# One overlay per frame, side by side (the overlay video is written too).

# %%
overlays = [overlay_masks(sample.frames[frame.frame_idx], frame.masks) for frame in frames]
contact_sheet = Image.fromarray(np.concatenate(overlays[::3], axis=1))
contact_sheet.save(WORK / "overlays.png")
result.save(WORK, format="overlay")
contact_sheet  # noqa: B018 - a notebook displays the last expression of a cell

# %% [markdown]
# ## Score J&F against the ground truth

# %%
ground_truth = WORK / "Annotations" / "occlusion"
ground_truth.mkdir(parents=True, exist_ok=True)
for index, labels in enumerate(sample.label_maps()):
    write_palette_png(ground_truth / f"{index:05d}.png", labels)
result.save(WORK / "predictions" / "occlusion", format="davis")
scores = evaluate(WORK / "Annotations", WORK / "predictions", layout="davis")
print(f"J {scores.J:.3f}  F {scores.F:.3f}  J&F {scores.JF:.3f}")
for name, score in scores.per_object.items():
    print(f"  {name}: J {score.J:.3f}  F {score.F:.3f}")
