"""ppTSN_Inference_helper (PP-TSN, TSN): ten crops of every segment, folded into the time axis.

decord ``get_batch`` of the left-middle frame of each of ``num_seg`` parts (Sampler ``select_left``), OpenCV
INTER_LINEAR to a fixed 4:3 with the short side ``short_size`` (skipped when it already is), TenCrop(target_size)
(4 corners and the center, each then mirrored), /255 and ImageNet mean/std in float32:
``[1, 10 * num_seg, 3, S, S]`` (``ntchw``), views in the order ``[crop0 x T, crop0 mirrored x T, crop1 x T, ...]``.

PaddleVideo's Recognizer2D takes ``num_segs`` from the input's T (``10 * num_seg``, fixed at export) and ppTSNHead
averages over all of it, so the ten views are averaged inside the model: one output row per clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..preprocess import ClipError
from . import Recipe, ops, register


@register
@dataclass(frozen=True)
class PPTSNRecipe(Recipe):
    helper = "ppTSN_Inference_helper"
    defaults = {"num_seg": 25, "seg_len": 1, "short_size": 256, "target_size": 224, "top_k": 1}
    models = "PP-TSN, TSN"
    decoder = "decord"
    layouts = ("ntchw",)

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        p = self.params
        frames = ops.decord_frames(path, lambda count: ops.left_middle_indices(count, p["num_seg"]))
        scaled = []
        for frame in frames:
            h, w = frame.shape[:2]
            scaled.append(frame if ops.is_short_side(w, h, p["short_size"]) else ops.cv2_resize(frame, ops.fixed_ratio_size(w, h, p["short_size"])))
        try:
            views = ops.ten_crop(scaled, p["target_size"])
        except ValueError as exc:
            raise ClipError(f"{path}: {exc}") from None
        return [np.ascontiguousarray(ops.normalize_tchw(views)[None])]
