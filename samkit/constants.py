"""Constants shared across samkit (one definition each)."""

DEFAULT_SAM2_BACKBONE = "sam2.1-hiera-tiny"
"""Smallest official SAM 2.1 model: the default backbone of the SAM 2 heads (a sensible laptop CPU choice)."""
VOID_LABEL = 255
"""Label of void / ignored pixels in label maps and masks (DAVIS ground truth, PASCAL-5i, COCO-20i)."""
