"""VideoSwin_Inference_helper (Video-Swin-Transformer): ``num_seg`` clips of ``seg_len`` frames, channels first.

decord, frame by frame, of ``num_seg`` clips of ``seg_len`` frames ``frame_interval`` apart (Sampler with
``frame_interval``, ``use_pil=False``), OpenCV INTER_LINEAR keeping the aspect ratio with the short side
``short_size`` (sides ``int(x * factor + 0.5)``; skipped when the short side already is ``short_size``), an OpenCV
center crop of **224** (the helper fixes it, whatever ``target_size`` says), then mean/std on 0-255 pixels:
``[1, 3, num_seg * seg_len, 224, 224]`` (``ncthw``).

The model (RecognizerTransformer) cuts T into views of its own ``runtime_cfg.test.num_seg`` frames and averages
them (softmax first with ``avg_type: prob``) inside the graph: one output row per clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..preprocess import ClipError
from . import Recipe, ops, register

CROP = 224  # VideoSwin_Inference_helper crops 224 whatever its target_size


@register
@dataclass(frozen=True)
class VideoSwinRecipe(Recipe):
    helper = "VideoSwin_Inference_helper"
    defaults = {
        "num_seg": 4, "seg_len": 32, "frame_interval": 2, "short_size": 224, "target_size": 224, "top_k": 1,
        "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
    }
    models = "Video-Swin-Transformer"
    decoder = "decord"
    layouts = ("ncthw",)

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        p = self.params
        pick = lambda count: ops.interval_indices(count, p["num_seg"], p["seg_len"], p["frame_interval"])
        frames = ops.decord_frames(path, pick, per_frame=True)
        out = []
        for frame in frames:
            h, w = frame.shape[:2]
            if not ops.is_short_side(w, h, p["short_size"]):
                frame = ops.cv2_resize(frame, ops.keep_ratio_rounded_size(w, h, p["short_size"]))
            try:
                out.append(ops.center_crop(frame, CROP))
            except ValueError as exc:
                raise ClipError(f"{path}: {exc}") from None
        return [np.ascontiguousarray(ops.normalize_0_255_cthw(out, p["mean"], p["std"])[None])]
