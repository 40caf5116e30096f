"""Referring-segmentation data: RefCOCO-family loaders, transforms and a generated task.

Importing this package needs numpy only; pycocotools, PIL and torch load when used.
"""

from samkit.referring.data.dataset import ReferringDataset, ReferringSample
from samkit.referring.data.refer import SPLIT_BY, ReferEntry, ReferIndex, annotation_files
from samkit.referring.data.safe_pickle import load_plain_pickle
from samkit.referring.data.synthetic import SyntheticReferringDataset, synthetic_sample, write_refer_layout
from samkit.referring.data.transforms import TestTransform, TrainTransform

__all__ = [
    "SPLIT_BY",
    "ReferEntry",
    "ReferIndex",
    "ReferringDataset",
    "ReferringSample",
    "SyntheticReferringDataset",
    "TestTransform",
    "TrainTransform",
    "annotation_files",
    "load_plain_pickle",
    "synthetic_sample",
    "write_refer_layout",
]
