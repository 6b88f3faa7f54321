"""SlowFast_Inference_helper: SlowFast (PaddleVideo ``tools/utils.py``), two inputs: the slow and the fast pathway.

What the helper's ``preprocess`` does, as facts (our own code below follows them):

1. DecodeSampler(num_frames, sampling_rate, test_mode=True) with decord: the clip spans
   ``num_frames * sampling_rate * fps / 30`` frames (fps = ``get_avg_fps()``, target_fps 30) from frame 0 (temporal
   clip 0 of 1); ``num_frames`` indices ``linspace(0, clip - 1, num_frames)`` truncated to int and clipped to
   ``[0, len]`` (**not** ``len - 1``: a video shorter than the clip asks decord for frame ``len``, which fails).
   Frames become PIL RGB images.
2. JitterScale(target_size, target_size): the ``np.random.uniform(s, s)`` draw is always ``s``. The short side
   becomes ``s`` and the long side ``floor(long / short * s)``, with PIL BILINEAR; nothing happens when the short side
   is already ``s``.
3. MultiCrop(target_size) **with its default test_mode=False**, i.e. a random square crop: ``x = random.randint(0,
   w - s)`` then ``y = random.randint(0, h - s)`` from Python's global ``random`` (which the helper never seeds), and
   no crop when the frame is already ``s x s``. (The config's test pipeline sets test_mode, but with one spatial clip
   its gap formula divides by zero, so the helper cannot use it.) So PaddleVideo's own predict.py gives a
   different input each run for any non-square video. This recipe makes the same two draws from its own
   ``random.Random(CROP_SEED)``: the crop PaddleVideo makes after ``random.seed(CROP_SEED)``, the same every run.
4. Image2Array(transpose=False): float32 ``[T, H, W, 3]``.
5. Normalization(mean 0.45, std 0.225 per channel, fixed in the helper): ``/ 255.0``, minus mean, divided by std,
   all float32.
6. PackOutput(alpha): the slow pathway takes frames ``linspace(0, T - 1, T // alpha)`` truncated to int; both
   pathways are transposed to ``[3, T, H, W]``.
7. Returns ``[slow[None], fast[None]]``: the exported model's inputs ``slow_input`` ``[1, 3, T/alpha, S, S]`` and
   ``fast_input`` ``[1, 3, T, S, S]``, in that order.

The model's head (SlowFastHead) ends in a softmax at inference, so its one row per clip is already probabilities;
the helper's own postprocess therefore skips Base's softmax (mean over rows when there are several, then top-k).
``views`` is 1 and ``aggregate`` is the mean over rows, as Base's.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..preprocess import ClipError
from . import Recipe, ops, register

TARGET_FPS = 30  # DecodeSampler's default, which the helper does not pass
MEAN = (0.45, 0.45, 0.45)  # fixed in the helper's preprocess, not parameters
STD = (0.225, 0.225, 0.225)
CROP_SEED = 0  # the seed of the random crop's draws (PaddleVideo's helper draws from an unseeded global random)


def sample_indices(frames: int, fps: float, num_frames: int, sampling_rate: int) -> np.ndarray:
    """DecodeSampler's test-mode frame indices (temporal clip 0 of 1)."""
    clip = num_frames * sampling_rate * fps / TARGET_FPS
    start = max(frames - clip, 0) * 0 / 1
    return np.clip(np.linspace(start, start + clip - 1, num_frames).astype(np.int64), 0, frames)


def crop_offset(width: int, height: int, size: int, rng: random.Random) -> tuple[int, int] | None:
    """MultiCrop's random (x, y), drawn x first; None when the frame is already ``size x size`` (no draw)."""
    if width == size and height == size:
        return None
    if width < size or height < size:
        raise ClipError(f"MultiCrop({size}) needs frames at least {size}x{size}, got {width}x{height}")
    x = rng.randint(0, width - size)
    y = rng.randint(0, height - size)
    return x, y


@register
@dataclass(frozen=True)
class SlowFastRecipe(Recipe):
    helper: ClassVar[str] = "SlowFast_Inference_helper"
    defaults: ClassVar[dict] = {"num_frames": 32, "sampling_rate": 2, "target_size": 256, "alpha": 8, "top_k": 1}
    models: ClassVar[str] = "SlowFast"
    decoder: ClassVar[str] = "decord"
    layouts: ClassVar[tuple[str, ...]] = ("ncthw", "ncthw")  # slow [1, 3, T/alpha, S, S], fast [1, 3, T, S, S]

    @property
    def views(self) -> int:
        return 1  # one random crop of one temporal clip

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        import decord
        from PIL import Image

        p = self.params
        num_frames, rate, size, alpha = int(p["num_frames"]), int(p["sampling_rate"]), int(p["target_size"]), int(p["alpha"])
        if not Path(path).is_file():
            raise ClipError(f"{path}: file not found")
        try:
            reader = decord.VideoReader(str(path))
            count, fps = len(reader), reader.get_avg_fps()
        except Exception as exc:  # decord raises bare RuntimeError/DECORDError
            detail = " ".join(str(exc).split())[:200] or repr(exc)  # one line
            raise ClipError(f"{path}: cannot decode: {detail}") from None
        index = sample_indices(count, fps, num_frames, rate)
        if index.max(initial=0) >= count:
            raise ClipError(f"{path}: {count} frames, but SlowFast's sampler asks for frame {int(index.max())} "
                            f"({num_frames} frames every {rate} at 30 fps); PaddleVideo's decord call fails there too")
        images = [Image.fromarray(frame) for frame in reader.get_batch(index).asnumpy()]  # uint8 [H, W, 3]: RGB
        w, h = images[0].size
        if not ops.is_short_side(w, h, size):
            images = [img.resize(ops.jitter_scale_size(w, h, size), Image.BILINEAR) for img in images]
        frames = np.stack([np.asarray(img) for img in images])  # uint8 [T, H, W, 3]
        offset = crop_offset(frames.shape[2], frames.shape[1], size, random.Random(CROP_SEED))
        if offset is not None:
            x, y = offset
            frames = frames[:, y:y + size, x:x + size]
        fast = frames.astype(np.float32) / 255.0
        fast -= np.asarray(MEAN, dtype=np.float32).reshape(1, 1, 1, 3)
        fast /= np.asarray(STD, dtype=np.float32).reshape(1, 1, 1, 3)
        slow = fast[np.linspace(0, len(fast) - 1, len(fast) // alpha).astype(np.int64)]
        return [np.ascontiguousarray(slow.transpose(3, 0, 1, 2))[None], np.ascontiguousarray(fast.transpose(3, 0, 1, 2))[None]]
