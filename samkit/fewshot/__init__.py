"""Few-shot segmentation (FSSAM)."""
