# %% [markdown]
# # Referring image segmentation with ReferSAM
#
# Segment objects of an image from free-form text: one mask per expression, at the image's own
# resolution, then save the masks and an overlay.
#
# No official ReferSAM weights exist, so without a checkpoint this runs an untrained tiny ReferSAM
# (tiny SAM ViT + the packaged MiniLM text encoder): the pipeline is real, the masks are not
# meaningful. Set `SAMKIT_EXAMPLE_CHECKPOINT` (with `SAMKIT_EXAMPLE_BACKBONE=sam-vit-b` and
# `SAMKIT_EXAMPLE_TEXT_ENCODER=bert-base-uncased`) to a checkpoint trained with samkit.

# %%
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

import samkit
from samkit.checkpoints import UntrainedWeightsWarning

BACKBONE = os.environ.get("SAMKIT_EXAMPLE_BACKBONE", "tiny-sam")
TEXT_ENCODER = os.environ.get("SAMKIT_EXAMPLE_TEXT_ENCODER", "minilm")
CHECKPOINT = os.environ.get("SAMKIT_EXAMPLE_CHECKPOINT") or None
IMAGE_SIZE = int(os.environ.get("SAMKIT_EXAMPLE_IMAGE_SIZE", "64"))
WORK = Path(os.environ.get("SAMKIT_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="samkit_referring_"))

# %% [markdown]
# ## An image with two objects
# A red disk on the left and a blue square on the right, on a grey background.

# %%
image = np.full((120, 160, 3), 128, dtype=np.uint8)
yy, xx = np.mgrid[:120, :160]
image[(yy - 60) ** 2 + (xx - 45) ** 2 < 25**2] = (220, 40, 40)
image[35:85, 95:145] = (40, 60, 220)
Image.fromarray(image).save(WORK / "image.png")

# %% [markdown]
# ## Load ReferSAM and segment two expressions
# ReferSAM fuses the text into the image encoder, so the image is encoded once per expression; the
# expressions of one call run as a batch.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UntrainedWeightsWarning)
    segmenter = samkit.load("refersam", backbone=BACKBONE, text_encoder=TEXT_ENCODER, checkpoint=CHECKPOINT,
                            image_size=IMAGE_SIZE, device="cpu")
texts = [samkit.Text("the red circle on the left"), samkit.Text("the blue square")]
result = segmenter.predict(image, prompt=texts)
for obj_id, text, mask, score in zip(result.obj_ids, texts, result.masks, result.scores):
    print(f"{obj_id}: {text.text!r}: {int(mask.sum())} pixels, score {score:.3f}")

# %% [markdown]
# ## Save the masks and an overlay

# %%
result.save(WORK / "labels.png")
result.save(WORK / "masks.json")
Image.fromarray(result.overlay(image)).save(WORK / "overlay.png")
segmenter.close()
print(f"outputs in {WORK}")
