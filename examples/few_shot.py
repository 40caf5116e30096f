# %% [markdown]
# # Few-shot segmentation with FSSAM
#
# Annotate a folder of images from one example, then from five: FSSAM segments the class shown by
# the support images and masks in every query image. The support set is encoded once (DINOv2
# features and SAM 2 memories) and reused for the whole folder.
#
# Without a checkpoint this runs on a tiny randomly initialised FSSAM, so the pipeline is real but
# the masks are not meaningful. For real weights set `BACKBONE, CHECKPOINT` to e.g.
# `"sam2-hiera-small", "exp/pascal/FSSAM/split0/small/snapshot/best_1shot.pth"` (official release).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import samkit

BACKBONE = os.environ.get("SAMKIT_EXAMPLE_BACKBONE", "tiny-sam2")
CHECKPOINT = os.environ.get("SAMKIT_EXAMPLE_CHECKPOINT") or None
WORK = Path(os.environ.get("SAMKIT_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="samkit_few_shot_"))
SIZE = (120, 160)  # (height, width) of the generated images


# %% [markdown]
# ## A folder of generated images
# Each image shows one or two orange disks (the class to segment) and a blue square (a distractor)
# on a striped background; the disk masks are the ground truth.

# %%
def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]]
    image = np.zeros((*SIZE, 3), np.uint8)
    image[...] = 40 + 30 * ((cols + rng.integers(0, 20)) // 10 % 2)[..., None]
    top, left = rng.integers(10, SIZE[0] - 40), rng.integers(10, SIZE[1] - 40)
    image[top : top + 30, left : left + 30] = (40, 80, 220)
    mask = np.zeros(SIZE, bool)
    for _ in range(rng.integers(1, 3)):
        cy, cx, radius = rng.integers(20, SIZE[0] - 20), rng.integers(20, SIZE[1] - 20), rng.integers(10, 18)
        mask |= (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2
    image[mask] = (240, 140, 30)
    return image, mask


queries_dir = WORK / "queries"
queries_dir.mkdir(parents=True, exist_ok=True)
truth = {}
for index in range(6):
    image, mask = scene(100 + index)
    Image.fromarray(image).save(queries_dir / f"query_{index}.png")
    truth[f"query_{index}"] = mask
examples = [scene(seed) for seed in range(5)]
print(f"{len(truth)} query images in {queries_dir}; {len(examples)} annotated examples")

# %% [markdown]
# ## One example, then five
# `support()` encodes a `SupportSet` once; `predict_many` segments every query against it.

# %%
seg = samkit.load("fssam", backbone=BACKBONE, checkpoint=CHECKPOINT, device="cpu")
query_paths = sorted(queries_dir.glob("*.png"))
results = {}
for shots in (1, 5):
    support = samkit.SupportSet([image for image, _ in examples[:shots]], [mask for _, mask in examples[:shots]])
    seg.support(support)
    results[shots] = seg.predict_many(query_paths)


def iou(predicted: np.ndarray, target: np.ndarray) -> float:
    union = np.logical_or(predicted, target).sum()
    return float(np.logical_and(predicted, target).sum() / union) if union else 1.0


for shots, predictions in results.items():
    scores = [iou(result.masks[0], truth[path.stem]) for path, result in zip(query_paths, predictions)]
    print(f"{shots}-shot: mean IoU {np.mean(scores):.3f} over {len(scores)} queries")

# %% [markdown]
# ## Look at the masks
# Top row: one example; bottom row: five examples.

# %%
rows = [np.concatenate([result.overlay(np.asarray(Image.open(path).convert("RGB")))
                        for path, result in zip(query_paths, results[shots])], axis=1) for shots in (1, 5)]
sheet = Image.fromarray(np.concatenate(rows, axis=0))
sheet.save(WORK / "few_shot.png")
for path, result in zip(query_paths, results[5]):
    result.save(WORK / "masks" / f"{path.stem}.png")
sheet  # noqa: B018 - a notebook displays the last expression of a cell
