"""TimeSformer_Inference_helper: TimeSformer and PP-TimeSformer (PaddleVideo ``tools/utils.py``).

What the helper's ``preprocess`` does, as facts (our own code below follows them):

1. PyAV decode in test mode (``ops.pyav_test_clip``, shared with TokenShift). The clip window is ``sampling_rate * num_seg / target_fps * fps`` frames
   (``VideoDecoder`` defaults: sampling_rate 32, target_fps 30; fps = the stream's ``average_rate``), starting at 0.
   With the stream's ``duration`` known, frames are decoded after a backward seek to pts
   ``max(start_pts - 1024, 0)`` up to pts ``int(end_idx * duration / frames)`` plus the one frame after it; with
   no duration the whole video. Frames are keyed by pts (a repeated pts keeps the last), sorted, and converted
   with ``to_rgb().to_ndarray()``.
2. Linspace sampling: ``linspace(0, clip - 1, num_seg)`` over the decoded frames, clipped to ``[0, len - 1]`` and
   truncated to int.
3. Normalization **before** resizing, on uint8 ``[T, H, W, 3]``: ``/ 255.0`` (float64), minus mean, divided by std
   (float32 constants, so float64 arithmetic), then cast to float32 (``paddle.to_tensor``).
4. Transpose to ``[3, T, H, W]`` (``cthw``).
5. JitterScale(short_size, short_size): a draw of ``np.random.uniform(s, s)`` is always ``s``, so it is
   deterministic. The short side becomes ``s``, the long side ``floor(long / short * s)``; nothing happens when the
   short side is already ``s``. The resize is Paddle's ``F.interpolate(bilinear, align_corners=False, align_mode=0)``
   on the ``[3, T, H, W]`` tensor, reproduced in float32 with the CPU kernel's index and weight arithmetic
   (``ops.paddle_bilinear``).
6. UniformCrop(target_size), 3 views along the long side in the order **start, end, middle** (offsets 0, 2*step,
   step with ``step = (long - crop) // 2``), concatenated on the T axis: ``[3, 3*num_seg, crop, crop]``.
7. Batch axis: ``[1, 3, 3*num_seg, crop, crop]``.

The exported model (``RecognizerTransformer.infer_step``) splits the T axis back into the 3 views, runs each and
averages them inside the graph (``avg_type`` 'score' for TimeSformer: the mean of logits; 'prob' for
PP-TimeSformer: the mean of softmaxes). So the model gives **one row per clip**, and the helper's postprocess is
Base's (softmax, top-k): ``views`` is 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import HarnessError
from . import Recipe, ops, register


def linspace_indices(frames: int, start: float, end: float, num_seg: int) -> np.ndarray:
    """Sampler(linspace_sample=True) over the decoded frames: ``num_seg`` points from ``start`` to ``end``, clipped to
    ``[0, frames - 1]``, truncated to int."""
    return np.clip(np.linspace(start, end, num_seg), 0, frames - 1).astype(np.int64) % frames


def uniform_crop_offsets(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """UniformCrop's three (x, y) offsets: start, end, middle of the side longer than the crop."""
    if height == crop:
        step = (width - crop) // 2
        return [(0, 0), (2 * step, 0), (step, 0)]
    if width == crop:
        step = (height - crop) // 2
        return [(0, 0), (0, 2 * step), (0, step)]
    raise HarnessError(f"UniformCrop({crop}) needs one side equal to the crop after scaling, got {width}x{height}; "
                       "PaddleVideo raises here too (short_size must equal target_size)")


@register
@dataclass(frozen=True)
class TimeSformerRecipe(Recipe):
    helper: ClassVar[str] = "TimeSformer_Inference_helper"
    defaults: ClassVar[dict] = {"num_seg": 8, "seg_len": 1, "short_size": 224, "target_size": 224, "top_k": 1,
                                "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
    models: ClassVar[str] = "TimeSformer, PP-TimeSformer (mean [0, 0, 0], std [1, 1, 1] in its config)"
    decoder: ClassVar[str] = "pyav"
    layouts: ClassVar[tuple[str, ...]] = ("ncthw",)  # [1, 3, 3*num_seg, S, S]: the 3 views folded into T

    @property
    def views(self) -> int:
        return 1  # the graph averages the 3 UniformCrop views itself (infer_step), giving one row

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        p = self.params
        num_seg, short, crop = int(p["num_seg"]), int(p["short_size"]), int(p["target_size"])
        frames, start, end = ops.pyav_test_clip(path, num_seg)  # VideoDecoder's sampling_rate 32, target_fps 30
        picked = np.stack([frames[i] for i in linspace_indices(len(frames), start, end, num_seg)])  # [T, H, W, 3] uint8
        imgs = ops.normalize_float64_thwc(picked, p["mean"], p["std"]).transpose(3, 0, 1, 2)  # [3, T, H, W]
        h, w = imgs.shape[2:]
        if not ops.is_short_side(w, h, short):
            new_w, new_h = ops.jitter_scale_size(w, h, short)
            imgs = ops.paddle_bilinear(np.ascontiguousarray(imgs), new_h, new_w)
        views = [imgs[:, :, y:y + crop, x:x + crop] for x, y in uniform_crop_offsets(*imgs.shape[2:], crop)]
        return [np.concatenate(views, axis=1)[None]]
