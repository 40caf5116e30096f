"""Referring-segmentation metrics: classic RIS, gRefCOCO (GRES) and Ref-ZOM, from one streaming accumulator.

Per sample: ``I = |P ∩ G|``, ``U = |P ∪ G|`` of the binary predicted and ground-truth masks, the
dataset's no-target flag (gRefCOCO ``empty``, Ref-ZOM ``source == "zero"``; by default, an empty
ground truth), and whether the prediction is empty. ReferSAM has no no-target head, so **an empty
predicted mask means "no target"**. Scores are fractions in [0, 1] (papers print x100); a score with no
sample to average over is ``None``.

Classic RIS (LAVT / CARIS ``evaluate``; Ref-ZOM ``test.py`` for its one-to-one/many samples), over the
*targeted* samples (all of them on RefCOCO / RefCOCO+ / RefCOCOg):

* ``oIoU`` = sum I / sum U; ``mIoU`` = mean of I / U (0 when U = 0); ``Prec@X`` = share with IoU >= X,
  X in 0.5 ... 0.9 (gRefCOCO's Pr@0.7/0.8/0.9 are the same numbers: ReLA counts targeted samples only).

gRefCOCO (ReLA ``ReferEvaluator``), over all samples:

* ``cIoU`` = sum I / sum U, where a no-target sample adds I = 0 and U = |P| (0 when P is empty);
* ``gIoU`` = mean per-sample IoU, where a no-target sample scores 1 if P is empty, else 0
  (empty-vs-empty counts as a perfect match), and a targeted one I / U (0 when U = 0);
* ``N-acc`` = TP / (TP + FN) over no-target samples (TP: P empty); ``T-acc`` = TN / (TN + FP) over
  targeted samples (TN: P non-empty). ReLA prints 0 for both when a split has no no-target sample;
  here they are ``None`` when undefined.

Ref-ZOM (DMMI ``test.py``): ``Acc`` = share of one-to-zero samples whose prediction is empty (= N-acc),
next to oIoU / mIoU / Prec@X over the one-to-one/many samples.

The state is one float64 vector of sums and counts (``state()``), so shards on several ranks combine by
summing it (``all_reduce``) and ``load_state()`` / ``merge()``. Resolution: see :func:`eval_masks`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samkit.errors import InputError

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
SPACES = ("original", "resized")
_SLOTS = (
    "num_samples",
    "num_targeted",
    "num_no_target",
    "sum_i_targeted",
    "sum_u_targeted",
    "sum_iou_targeted",
    "sum_u_no_target",
    "true_positive",  # no-target sample, empty prediction
    "true_negative",  # targeted sample, non-empty prediction
    *(f"prec_{t}" for t in THRESHOLDS),
)
_INDEX = {name: i for i, name in enumerate(_SLOTS)}


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else float(numerator) / float(denominator)


def _counts(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample I, U, |P| and |G| of boolean masks (B, H, W), numpy arrays or torch tensors."""
    if hasattr(pred, "detach") or hasattr(target, "detach"):
        import torch

        p = torch.as_tensor(pred).bool()
        g = torch.as_tensor(target, device=p.device).bool()
        if p.shape != g.shape:
            raise InputError(f"prediction shape {tuple(p.shape)} differs from target shape {tuple(g.shape)}")
        sums = [x.flatten(1).sum(1).cpu().numpy() for x in (p & g, p | g, p, g)]
        return tuple(s.astype(np.float64) for s in sums)
    p, g = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    if p.shape != g.shape:
        raise InputError(f"prediction shape {p.shape} differs from target shape {g.shape}")
    flat = [x.reshape(x.shape[0], -1).sum(1) for x in (p & g, p | g, p, g)]
    return tuple(f.astype(np.float64) for f in flat)


class ReferringMetrics:
    """Streaming accumulator of every referring metric; rank-summable state (see the module docstring)."""

    def __init__(self) -> None:
        self._state = np.zeros(len(_SLOTS), dtype=np.float64)

    def add_counts(self, intersection: Any, union: Any, pred_area: Any, no_target: Any) -> None:
        """Add samples from their I, U, |P| and no-target flags (1-D, same length)."""
        inter = np.asarray(intersection, dtype=np.float64).reshape(-1)
        uni = np.asarray(union, dtype=np.float64).reshape(-1)
        pred_empty = np.asarray(pred_area, dtype=np.float64).reshape(-1) == 0
        nt = np.asarray(no_target, dtype=bool).reshape(-1)
        if not inter.shape == uni.shape == pred_empty.shape == nt.shape:
            raise InputError(
                f"intersection, union, pred_area and no_target must have one entry per sample, got lengths "
                f"{inter.size}, {uni.size}, {pred_empty.size}, {nt.size}"
            )
        if (inter > uni).any() or (inter < 0).any():
            raise InputError("every intersection must be between 0 and its union")
        targeted = ~nt
        iou = np.divide(inter, uni, out=np.zeros_like(inter), where=uni > 0)
        s, ix = self._state, _INDEX
        s[ix["num_samples"]] += inter.size
        s[ix["num_targeted"]] += targeted.sum()
        s[ix["num_no_target"]] += nt.sum()
        s[ix["sum_i_targeted"]] += inter[targeted].sum()
        s[ix["sum_u_targeted"]] += uni[targeted].sum()
        s[ix["sum_iou_targeted"]] += iou[targeted].sum()
        s[ix["sum_u_no_target"]] += uni[nt].sum()
        s[ix["true_positive"]] += (nt & pred_empty).sum()
        s[ix["true_negative"]] += (targeted & ~pred_empty).sum()
        for t in THRESHOLDS:
            s[ix[f"prec_{t}"]] += (targeted & (iou >= t)).sum()

    def update(self, pred: Any, target: Any, no_target: Any = None) -> None:
        """Add a batch: binary masks (B, H, W) or one (H, W) mask; no_target (B,) bools or None.

        With ``no_target=None`` a sample is "no target" when its ground truth is empty.
        """
        if np.ndim(pred) == 2:
            pred, target = pred[None], target[None]
            no_target = None if no_target is None else [no_target]
        if np.ndim(pred) != 3:
            raise InputError(f"masks must be (H, W) or (B, H, W), got {np.ndim(pred)} dimensions")
        inter, uni, pred_area, target_area = _counts(pred, target)
        flags = target_area == 0 if no_target is None else np.asarray(no_target, dtype=bool).reshape(-1)
        # ReLA: a no-target sample contributes I = 0 (its ground truth should be empty anyway).
        inter = np.where(flags, 0.0, inter)
        self.add_counts(inter, uni, pred_area, flags)

    def state(self) -> np.ndarray:
        """The float64 state vector (a copy); sum it over ranks and ``load_state`` the result."""
        return self._state.copy()

    def load_state(self, state: Any) -> None:
        """Replace the state (e.g. by the all-reduced sum of every rank's ``state()``)."""
        array = np.asarray(state, dtype=np.float64).reshape(-1)
        if array.shape != self._state.shape:
            raise InputError(f"a referring-metrics state has {len(_SLOTS)} entries, got {array.size}")
        self._state = array.copy()

    def merge(self, other: ReferringMetrics) -> None:
        """Add another accumulator's samples (same as summing the states)."""
        self._state += other._state

    def compute(self) -> dict[str, float | int | None]:
        """Every metric of the module docstring, plus the sample counts."""
        s = {name: self._state[i] for name, i in _INDEX.items()}
        targeted, no_target = s["num_targeted"], s["num_no_target"]
        no_target_iou = s["true_positive"]  # 1 per correctly empty no-target prediction
        results: dict[str, float | int | None] = {
            "oIoU": _ratio(s["sum_i_targeted"], s["sum_u_targeted"]),
            "mIoU": _ratio(s["sum_iou_targeted"], targeted),
        }
        for t in THRESHOLDS:
            results[f"Prec@{t}"] = _ratio(s[f"prec_{t}"], targeted)
        results["cIoU"] = _ratio(s["sum_i_targeted"], s["sum_u_targeted"] + s["sum_u_no_target"])
        results["gIoU"] = _ratio(s["sum_iou_targeted"] + no_target_iou, s["num_samples"])
        results["N-acc"] = _ratio(s["true_positive"], no_target)
        results["T-acc"] = _ratio(s["true_negative"], targeted)
        results["Acc"] = results["N-acc"]
        results["num_samples"] = int(s["num_samples"])
        results["num_targeted"] = int(targeted)
        results["num_no_target"] = int(no_target)
        return results


def eval_masks(
    pred_logits: Any, target: Any, space: str = "original", input_size: tuple[int, int] | None = None
) -> tuple[Any, Any]:
    """Binary (prediction, target) masks for one batch, in the chosen evaluation space.

    pred_logits (B, h, w): the network's logits at its (square) input size; target (B, H, W): the
    ground truth at the image's original resolution.

    * ``"original"`` (default): the logits are resized bilinearly (align_corners=False) to (H, W) and
      thresholded at 0 (= sigmoid >= 0.5, the official rule); the target is used as is.
    * ``"resized"`` (CARIS / LAVT default): the logits are thresholded at the input size and the target
      is resized to it by nearest neighbour, as in training (``input_size`` defaults to (h, w)).
    """
    import torch
    import torch.nn.functional as F

    if space not in SPACES:
        raise InputError(f"unknown evaluation space {space!r}; expected one of {SPACES}")
    logits = torch.as_tensor(pred_logits)
    target_t = torch.as_tensor(target)
    if logits.dim() != 3 or target_t.dim() != 3 or logits.shape[0] != target_t.shape[0]:
        raise InputError(
            f"pred_logits and target must be (B, h, w) and (B, H, W) with the same B, got "
            f"{tuple(logits.shape)} and {tuple(target_t.shape)}"
        )
    if space == "original":
        size = tuple(target_t.shape[-2:])
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits[:, None].float(), size=size, mode="bilinear", align_corners=False)[
                :, 0
            ]
        return logits >= 0, target_t.bool()
    size = input_size or tuple(logits.shape[-2:])
    if tuple(logits.shape[-2:]) != tuple(size):
        raise InputError(
            f"resized-space evaluation needs logits at {tuple(size)}, got {tuple(logits.shape[-2:])}"
        )
    resized = F.interpolate(target_t[:, None].float(), size=size, mode="nearest")[:, 0]
    return logits >= 0, resized.bool()
