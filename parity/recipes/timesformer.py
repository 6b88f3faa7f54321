"""TimeSformer_Inference_helper: TimeSformer and PP-TimeSformer (PaddleVideo ``tools/utils.py``).

What the helper's ``preprocess`` does, as facts (our own code below follows them):

1. PyAV decode in test mode. The clip window is ``sampling_rate * num_seg / target_fps * fps`` frames
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
   on the ``[3, T, H, W]`` tensor, reproduced here in float32 with the CPU kernel's index and weight arithmetic
   (below).
6. UniformCrop(target_size), 3 views along the long side in the order **start, end, middle** (offsets 0, 2*step,
   step with ``step = (long - crop) // 2``), concatenated on the T axis: ``[3, 3*num_seg, crop, crop]``.
7. Batch axis: ``[1, 3, 3*num_seg, crop, crop]``.

The exported model (``RecognizerTransformer.infer_step``) splits the T axis back into the 3 views, runs each and
averages them inside the graph (``avg_type`` 'score' for TimeSformer: the mean of logits; 'prob' for
PP-TimeSformer: the mean of softmaxes). So the model gives **one row per clip**, and the helper's postprocess is
Base's (softmax, top-k): ``views`` is 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import HarnessError
from . import Recipe, register

# VideoDecoder's own defaults, which the helper does not pass (only num_seg): the clip window in frames.
SAMPLING_RATE = 32
TARGET_FPS = 30
SEEK_MARGIN = 1024  # pts before the window's start that the backward seek aims at
VIEWS = 3  # UniformCrop


def decode_window(path: str | Path, num_seg: int) -> tuple[list[np.ndarray], float]:
    """PyAV frames of the test-mode window (RGB uint8 ``[H, W, 3]`` each) and the window's length in frames."""
    import av

    container = av.open(str(path))
    try:
        if not container.streams.video:
            raise HarnessError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        clip = SAMPLING_RATE * num_seg / TARGET_FPS * fps
        if stream.duration is None:  # no duration: the whole video
            start_pts, end_pts = 0, math.inf
        else:
            if not stream.frames:
                raise HarnessError(f"{path}: the video stream gives a duration but no frame count; "
                                   "PaddleVideo's PyAV decoder divides by it (ZeroDivisionError)")
            start, end = _window(stream.frames, clip)
            per_frame = stream.duration / stream.frames
            start_pts, end_pts = int(start * per_frame), int(end * per_frame)
        container.seek(max(start_pts - SEEK_MARGIN, 0), any_frame=False, backward=True, stream=stream)
        kept = {}
        for frame in container.decode(video=0):
            if frame.pts < start_pts:
                continue
            kept[frame.pts] = frame
            if frame.pts > end_pts:  # the first frame past the window is kept too, then decoding stops
                break
        frames = [kept[pts].to_rgb().to_ndarray() for pts in sorted(kept)]
    finally:
        container.close()
    return frames, clip


def _window(frames: int, clip: float) -> tuple[float, float]:
    """Test-mode clip 0 of 1: it starts at frame 0 and spans ``clip`` frames."""
    start = max(frames - clip, 0) * 0 / 1
    return start, start + clip - 1


def linspace_indices(frames: int, clip: float, num_seg: int) -> np.ndarray:
    start, end = _window(frames, clip)
    return np.clip(np.linspace(start, end, num_seg), 0, frames - 1).astype(np.int64) % frames


def _axis_weights(size_in: int, size_out: int, float_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paddle's CPU bilinear (align_corners False, align_mode 0) along one axis: low index, high index, their weights.

    The ratio is a float32 ``in / out``. The source coordinate ``ratio * (i + 0.5) - 0.5`` gives the low index
    truncated toward zero from double arithmetic, as the kernel's source reads, clamped at 0. The weight is that
    coordinate as a float32, clamped at 0, minus the index. Paddle 3.3.1's compiled CPU kernel rounds the coordinate
    in two different ways, measured index by index with one-hot inputs: **rows** take the double value rounded once
    to float32, **columns** are computed in float32 throughout (``float(ratio * (i + 0.5))`` then ``- 0.5``), one
    float32 step apart in some places (e.g. column 238 of 320 -> 298). ``float_weights`` picks the column form.
    """
    ratio = np.float32(size_in) / np.float32(size_out) if size_out > 1 else np.float32(0)
    index = np.arange(size_out)
    coord = np.float64(ratio) * (index + 0.5) - 0.5
    low = np.maximum(np.trunc(coord).astype(np.int64), 0)
    high = np.minimum(low + 1, size_in - 1)
    if float_weights:
        coord = ratio * (index.astype(np.float32) + np.float32(0.5)) - np.float32(0.5)
    frac = np.maximum(coord.astype(np.float32), np.float32(0)) - low.astype(np.float32)
    return low, high, frac, np.float32(1) - frac


def paddle_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize the last two axes of float32 ``x`` as Paddle's CPU ``F.interpolate(mode="bilinear")`` does.

    Each output is ``((a*ws)*we + (b*wn)*we) + (c*ws)*ww + (d*wn)*ww`` in float32, in that order, where a..d are the
    (north-west, south-west, north-east, south-east) neighbours and ws/wn, we/ww the row and column weights.
    """
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (height, width):
        return x.copy()
    y0, y1, dn, ds = _axis_weights(in_h, height, float_weights=False)
    x0, x1, dw, de = _axis_weights(in_w, width, float_weights=True)
    ds, dn = ds[:, None], dn[:, None]
    de, dw = de[None, :], dw[None, :]
    rows0, rows1 = x[..., y0, :], x[..., y1, :]
    out = rows0[..., x0] * ds * de
    out += rows1[..., x0] * dn * de
    out += rows0[..., x1] * ds * dw
    out += rows1[..., x1] * dn * dw
    return out


def jitter_scale_size(height: int, width: int, size: int) -> tuple[int, int] | None:
    """JitterScale's output (height, width), or None when the short side is already ``size``."""
    if (width <= height and width == size) or (height <= width and height == size):
        return None
    if width < height:
        return int(math.floor(float(height) / width * size)), size
    return size, int(math.floor(float(width) / height * size))


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
        frames, clip = decode_window(path, num_seg)
        if not frames:
            raise HarnessError(f"{path}: PyAV decoded no frames in the clip window")
        picked = np.stack([frames[i] for i in linspace_indices(len(frames), clip, num_seg)])  # [T, H, W, 3] uint8
        mean = np.asarray(p["mean"], dtype=np.float32).reshape(1, 1, 1, 3)
        std = np.asarray(p["std"], dtype=np.float32).reshape(1, 1, 1, 3)
        imgs = ((picked / 255.0 - mean) / std).astype(np.float32).transpose(3, 0, 1, 2)  # [3, T, H, W]
        size = jitter_scale_size(*imgs.shape[2:], short)
        if size is not None:
            imgs = paddle_bilinear(imgs, *size)
        views = [imgs[:, :, y:y + crop, x:x + crop] for x, y in uniform_crop_offsets(*imgs.shape[2:], crop)]
        return [np.concatenate(views, axis=1)[None]]
