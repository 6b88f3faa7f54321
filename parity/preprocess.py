"""Decoding and PaddleVideo's ppTSM inference preprocessing.

The pipeline of PaddleVideo's ``ppTSM_Inference_helper`` (predict.py):
uniform middle-frame sampling in valid mode, Scale(short_size) with a fixed 4:3 ratio and
PIL bilinear, CenterCrop(target_size) with Python ``round``, /255, ImageNet mean/std.
Output: float32 ``[1, T, 3, H, W]``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .native import captured_output

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


class ClipError(Exception):
    """One clip cannot be used; the message is a single line naming the file."""


@dataclass(frozen=True)
class PreprocessConfig:
    num_seg: int = 8
    short_size: int = 256
    target_size: int = 224

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_size(cls, num_seg: int, target_size: int, short_size: int | None = None) -> "PreprocessConfig":
        """Scale to PaddleVideo's 256:224 ratio of the crop unless ``short_size`` is given."""
        return cls(num_seg, short_size or default_short_size(target_size), target_size)


def default_short_size(target_size: int) -> int:
    return int(round(target_size * 256 / 224))


def sample_indices(num_frames: int, num_seg: int) -> list[int]:
    """0-based frame indices of PaddleVideo's valid-mode Sampler (seg_len 1)."""
    average = num_frames // num_seg
    indices = []
    for i in range(num_seg):
        if average >= 1:
            idx = (average - 1) // 2 + i * average
        else:
            idx = i
        indices.append(idx % num_frames)
    return indices


def scale_size(width: int, height: int, short_size: int) -> tuple[int, int]:
    """Output (w, h) of PaddleVideo's Scale with fixed_ratio: short side -> short_size, 4:3."""
    if (width <= height and width == short_size) or (height <= width and height == short_size):
        return width, height
    long_size = int(short_size * 4.0 / 3.0)
    return (short_size, long_size) if width <= height else (long_size, short_size)


def crop_box(width: int, height: int, target: int) -> tuple[int, int, int, int]:
    """CenterCrop box (x1, y1, x2, y2), offsets rounded with Python's round."""
    x1 = int(round((width - target) / 2.0))
    y1 = int(round((height - target) / 2.0))
    return x1, y1, x1 + target, y1 + target


def preprocess_frames(frames: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """RGB uint8 frames ``[H, W, 3]`` -> normalized float32 ``[T, 3, S, S]``."""
    out = []
    for frame in frames:
        img = Image.fromarray(frame, mode="RGB")
        size = scale_size(img.width, img.height, cfg.short_size)
        if size != img.size:
            img = img.resize(size, Image.BILINEAR)
        if img.width < cfg.target_size or img.height < cfg.target_size:
            raise ValueError(f"frame {img.size} is smaller than the crop {cfg.target_size}")
        img = img.crop(crop_box(img.width, img.height, cfg.target_size))
        out.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1))
    arr = np.stack(out) / 255.0
    return ((arr - MEAN) / STD).astype(np.float32)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def decode_frames(path: Path, num_seg: int) -> list[np.ndarray]:
    """Decode the sampled frames of one video: decord first, PyAV where decord is missing."""
    try:
        import decord
    except ImportError:
        decord = None
    if decord is not None:
        with captured_output() as err:
            try:
                reader = decord.VideoReader(str(path))
                count = len(reader)
                if count == 0:
                    raise ValueError("video has no frames")
                batch = reader.get_batch(sample_indices(count, num_seg)).asnumpy()
            except Exception as exc:  # decord raises bare RuntimeError/DECORDError
                failure = exc
            else:
                failure = None
        if failure is not None:
            detail = _last_line(err["text"]).split(": ", 1)[-1] or str(failure).splitlines()[0]
            raise ClipError(f"{path}: cannot decode: {detail}")
        return list(batch)
    return _decode_frames_pyav(path, num_seg)


def _decode_frames_pyav(path: Path, num_seg: int) -> list[np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ClipError(f"{path}: cannot decode: {exc}") from None
    if not frames:
        raise ClipError(f"{path}: cannot decode: video has no frames")
    return [frames[i] for i in sample_indices(len(frames), num_seg)]


def load_clip_tensor(path: str | Path, cfg: PreprocessConfig) -> np.ndarray:
    """One clip file -> the float32 ``[1, T, 3, S, S]`` tensor the model is fed."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: file not found")
    frames = decode_frames(path, cfg.num_seg)
    try:
        return preprocess_frames(frames, cfg)[None]
    except ValueError as exc:
        raise ClipError(f"{path}: {exc}") from None
