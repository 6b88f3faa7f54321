"""TokenShift_Inference_helper (Token Shift Transformer): PyAV, three crops folded into time, channels first.

PyAV decoding of the test-mode clip (``VideoDecoder(backend="pyav", mode="test")``: the frames of the first
``32 * num_seg / 30 * fps`` frames' pts window, see ``ops.pyav_test_clip``), the middle frame of each of ``num_seg``
parts, mean/std (0.5) on /255 pixels in float64 then float32, JitterScale(short_size) with Paddle's bilinear
interpolation (floor for the long side; skipped when the short side already is ``short_size``), MultiCenterCrop
(center, left, right) concatenated along T: ``[1, 3, 3 * num_seg, S, S]`` (``ncthw``).

The model (RecognizerTransformer) cuts T into its ``runtime_cfg.test.num_seg`` frames per view and averages the
three views inside the graph: one output row per clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..preprocess import ClipError
from . import Recipe, ops, register


@register
@dataclass(frozen=True)
class TokenShiftRecipe(Recipe):
    helper = "TokenShift_Inference_helper"
    defaults = {
        "num_seg": 8, "seg_len": 1, "short_size": 256, "target_size": 256, "top_k": 1,
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
    }
    models = "Token Shift Transformer (TokenShiftVisionTransformer)"
    decoder = "pyav"
    layouts = ("ncthw",)

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        p = self.params
        frames, _, _ = ops.pyav_test_clip(path, p["num_seg"])
        picked = np.stack([frames[i] for i in ops.middle_indices(len(frames), p["num_seg"], p["seg_len"])])
        clip = ops.normalize_float64_thwc(picked, p["mean"], p["std"]).transpose(3, 0, 1, 2)  # [C, T, H, W]
        h, w = clip.shape[-2:]
        if not ops.is_short_side(w, h, p["short_size"]):
            new_w, new_h = ops.jitter_scale_size(w, h, p["short_size"])
            clip = ops.paddle_bilinear(np.ascontiguousarray(clip), new_h, new_w)
        try:
            views = ops.multi_center_crop(clip, p["target_size"])
        except ValueError as exc:
            raise ClipError(f"{path}: {exc}") from None
        return [np.ascontiguousarray(views)[None]]
