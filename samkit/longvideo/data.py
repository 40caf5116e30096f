"""Compatibility re-export: the VOS dataset readers live in ``samkit.datasets.vos``."""

from samkit.datasets.vos import VideoEntry, expected_outputs, is_complete, list_videos

__all__ = ["VideoEntry", "expected_outputs", "is_complete", "list_videos"]
