"""ReferSAM referring segmentation head."""
