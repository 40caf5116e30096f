"""Few-shot segmentation metrics: class-wise mIoU over the novel classes and FB-IoU.

The official protocol (FSSAM ``test.py`` with ``util.intersectionAndUnionGPU``), per episode:

1. logits (h, w) are resized to the original label size, bilinear with ``align_corners=True``;
2. prediction = ``sigmoid(logits) >= 0.5``; pixels whose label is 255 are ignored;
3. background and foreground intersections / unions are computed; the foreground pair is added to
   the episode's class (``class_index``) and both pairs to the global totals.

Then ``mIoU = mean_c I_c / (U_c + 1e-10)`` over all fold classes (a class never drawn counts as 0),
``FB-IoU = mean_{bg,fg} sum I / (sum U + 1e-10)`` and ``pIoU`` = the global foreground IoU.

``FewShotIoU.state`` is one int64 tensor ``[I_0..I_{C-1}, U_0..U_{C-1}, I_bg, I_fg, U_bg, U_fg]``:
summing the states of several ranks (``torch.distributed.all_reduce``) gives the state of all
their episodes. Counts are exact integers (the official accumulates float32, whose rounding shows
beyond ~1.6e7 pixels per class: relative differences below 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_LABEL = 255
EPS = 1e-10
THRESHOLD = 0.5


@dataclass(frozen=True)
class FewShotScores:
    """Final figures: ``miou`` (class-wise, novel classes), ``fbiou``, ``piou`` and per-class IoUs."""

    miou: float
    fbiou: float
    piou: float
    class_iou: tuple[float, ...]


def intersection_union(
    prediction: torch.Tensor, label: torch.Tensor, ignore: int = IGNORE_LABEL
) -> torch.Tensor:
    """``[I_bg, I_fg, U_bg, U_fg]`` (int64) of a 0/1 prediction against a 0/1/``ignore`` label."""
    if prediction.shape != label.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape"
        )
    valid = label != ignore
    pred = prediction.bool() & valid
    target = (label == 1) & valid
    pred_bg = ~pred & valid
    target_bg = ~target & valid
    i_fg = (pred & target).sum()
    i_bg = (pred_bg & target_bg).sum()
    u_fg = (pred | target).sum()
    u_bg = (pred_bg | target_bg).sum()
    return torch.stack([i_bg, i_fg, u_bg, u_fg]).to(torch.int64)


def binarize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Official post-processing: bilinear (``align_corners=True``) resize to ``size``, then sigmoid >= 0.5."""
    if logits.dim() == 3:
        logits = logits.squeeze(0)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (H, W) or (1, H, W), got {tuple(logits.shape)}")
    logits = logits.float()
    if tuple(logits.shape) != tuple(size):
        logits = F.interpolate(logits[None, None], size=size, mode="bilinear", align_corners=True)[0, 0]
    return torch.sigmoid(logits) >= THRESHOLD


class FewShotIoU:
    """Streaming accumulator of the official few-shot IoUs over ``num_classes`` fold classes."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.state = torch.zeros(2 * num_classes + 4, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Forget every episode."""
        self.state.zero_()

    def update(self, logits: torch.Tensor, label: torch.Tensor, class_index: int) -> None:
        """Add one episode from its logits (any size) and its label at the original size (0/1/255)."""
        self.update_prediction(binarize_logits(logits, tuple(label.shape[-2:])), label, class_index)

    def update_prediction(self, prediction: torch.Tensor, label: torch.Tensor, class_index: int) -> None:
        """Add one episode from a binary prediction of the label's size."""
        if not 0 <= int(class_index) < self.num_classes:
            raise ValueError(f"class_index must be in [0, {self.num_classes}), got {class_index}")
        counts = intersection_union(prediction.to(label.device), label).to(self.state.device)
        c = int(class_index)
        self.state[c] += counts[1]
        self.state[self.num_classes + c] += counts[3]
        self.state[2 * self.num_classes :] += counts

    def merge(self, state: torch.Tensor) -> None:
        """Add another accumulator's ``state`` (e.g. another rank's)."""
        if state.shape != self.state.shape:
            raise ValueError(f"state of shape {tuple(state.shape)} does not fit {tuple(self.state.shape)}")
        self.state += state.to(device=self.state.device, dtype=torch.int64)

    def compute(self) -> FewShotScores:
        """mIoU, FB-IoU, pIoU and per-class IoUs of the episodes added so far."""
        s = self.state.double().cpu()
        c = self.num_classes
        class_iou = s[:c] / (s[c : 2 * c] + EPS)
        totals_i, totals_u = s[2 * c : 2 * c + 2], s[2 * c + 2 :]
        fb = totals_i / (totals_u + EPS)
        return FewShotScores(
            miou=float(class_iou.mean()),
            fbiou=float(fb.mean()),
            piou=float(fb[1]),
            class_iou=tuple(float(v) for v in class_iou),
        )
