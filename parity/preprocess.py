"""Decoding and PaddleVideo's ppTSM inference preprocessing, plus its C++ deploy variant.

``paddlevideo`` (default) is PaddleVideo's ``ppTSM_Inference_helper`` (predict.py): decord,
uniform middle-frame sampling in valid mode, Scale(short_size) with a fixed 4:3 ratio and PIL
bilinear, CenterCrop(target_size) with Python ``round``, /255, ImageNet mean/std.

``cpp`` mirrors ``deploy/cpp_infer``: the same sampling, an aspect-preserving cv2 INTER_LINEAR
resize with integer truncation, a floor-division crop, /255 and mean/std applied to BGR
channels in BGR order, then a permute to RGB.

Output: float32 ``[1, T, 3, S, S]``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from PIL import Image

from .clips import special_kind
from .native import captured_output
from .optional import lazy

cv2 = lazy("cv2")
av = lazy("av")

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
VARIANTS = ("paddlevideo", "cpp")
FRAME_PATTERN = "img_{:05}.jpg"


class ClipError(Exception):
    """One clip cannot be used; the message is a single line naming the file."""


@dataclass(frozen=True)
class PreprocessConfig:
    num_seg: int = 8
    short_size: int = 256
    target_size: int = 224
    variant: str = "paddlevideo"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_size(cls, num_seg: int, target_size: int, short_size: int | None = None, variant: str = "paddlevideo") -> "PreprocessConfig":
        """Scale to PaddleVideo's 256:224 ratio of the crop unless ``short_size`` is given."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown preprocessing variant {variant!r}; known: {', '.join(VARIANTS)}")
        return cls(num_seg, short_size or default_short_size(target_size), target_size, variant)


def default_short_size(target_size: int) -> int:
    return int(round(target_size * 256 / 224))


def sample_indices(num_frames: int, num_seg: int) -> list[int]:
    """0-based frame offsets of PaddleVideo's valid-mode Sampler (seg_len 1), before wrapping.

    Videos take them modulo the frame count; frame folders add 1 (``img_00001.jpg`` first)
    and do not wrap, as PaddleVideo does.
    """
    average = num_frames // num_seg
    if average >= 1:
        return [(average - 1) // 2 + i * average for i in range(num_seg)]
    return list(range(num_seg))


def video_indices(num_frames: int, num_seg: int) -> list[int]:
    return [i % num_frames for i in sample_indices(num_frames, num_seg)]


# ----------------------------------------------------------------------------- geometry


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


def cpp_scale_size(width: int, height: int, short_size: int) -> tuple[int, int]:
    """Output (w, h) of the C++ Scale: aspect ratio kept, integer truncation."""
    if (width <= height and width == short_size) or (height <= width and height == short_size):
        return width, height
    if width < height:
        return short_size, height * short_size // width
    return width * short_size // height, short_size


def cpp_crop_box(width: int, height: int, target: int) -> tuple[int, int, int, int]:
    x1, y1 = (width - target) // 2, (height - target) // 2
    return x1, y1, x1 + target, y1 + target


# ----------------------------------------------------------------------------- pixels


def preprocess_frames(frames: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """RGB uint8 frames ``[H, W, 3]`` -> normalized float32 ``[T, 3, S, S]``."""
    if cfg.variant == "cpp":
        return _preprocess_cpp(frames, cfg)
    out = []
    for frame in frames:
        img = Image.fromarray(frame, mode="RGB")
        size = scale_size(img.width, img.height, cfg.short_size)
        if size != img.size:
            img = img.resize(size, Image.BILINEAR)
        _check_crop(img.width, img.height, cfg.target_size)
        img = img.crop(crop_box(img.width, img.height, cfg.target_size))
        out.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1))
    arr = np.stack(out) / 255.0
    return ((arr - MEAN) / STD).astype(np.float32)


def _preprocess_cpp(frames: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    out = []
    for frame in frames:
        bgr = np.ascontiguousarray(frame[..., ::-1])  # OpenCV decodes to BGR
        h, w = bgr.shape[:2]
        size = cpp_scale_size(w, h, cfg.short_size)
        if size != (w, h):
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        h, w = bgr.shape[:2]
        _check_crop(w, h, cfg.target_size)
        x1, y1, x2, y2 = cpp_crop_box(w, h, cfg.target_size)
        img = bgr[y1:y2, x1:x2].astype(np.float32) / 255.0
        img = (img - MEAN.ravel()[::-1]) / STD.ravel()[::-1]  # BGR-order mean/std on BGR pixels
        out.append(img[..., ::-1].transpose(2, 0, 1))  # permute: BGR -> RGB, HWC -> CHW
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _check_crop(width: int, height: int, target: int) -> None:
    if width < target or height < target:
        raise ValueError(f"frame {width}x{height} is smaller than the crop {target}")


# ----------------------------------------------------------------------------- decoding


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def decoder_name(path: Path) -> str:
    """The decoder (and its version) that reads ``path``: it is part of the tensor cache key."""
    if path.is_dir():
        dist = "pillow"
    else:
        try:
            import decord  # noqa: F401  (an import, not a lookup: a decord that cannot load means PyAV, as in decode_frames)

            dist = "decord"
        except ImportError:
            dist = "av"
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return dist


def decode_frames(path: Path, num_seg: int) -> list[np.ndarray]:
    """Decode the sampled RGB frames of one video (PP-TSM's segment sampling): decord first, PyAV where decord is missing."""
    return video_frames(path, lambda count: video_indices(count, num_seg))


def video_frames(path: Path, pick, per_frame: bool = False) -> list[np.ndarray]:
    """The RGB frames of a video at the indices ``pick(frame_count)`` returns, decoded by decord; where decord is missing
    (it has no wheels for some platforms), by PyAV, every frame decoded and indexed.

    ``per_frame`` reads each distinct index alone (``reader[i]``), as PaddleVideo's Sampler does with ``use_pil=False``;
    otherwise one ``get_batch`` call (PP-TSM's helper, and the Sampler with ``use_pil=True``). The other helpers'
    recipes (``parity.recipes``) decode through it too.
    """
    try:
        import decord  # an import, not a lookup: a decord that is missing or cannot load means PyAV
    except ImportError:
        return _video_frames_pyav(path, pick)
    with captured_output() as err:
        try:
            reader = decord.VideoReader(str(path))
            count = len(reader)
            if not count:
                raise ValueError("video has no frames")
            indices = [int(i) for i in pick(count)]
            if per_frame:
                read = {i: reader[i].asnumpy() for i in sorted(set(indices))}
                frames = [read[i] for i in indices]
            else:
                frames = list(reader.get_batch(indices).asnumpy())
        except Exception as exc:  # decord raises bare RuntimeError/DECORDError
            failure = exc
        else:
            failure = None
    if failure is not None:
        detail = _last_line(err["text"]).split(": ", 1)[-1] or str(failure).splitlines()[0]
        raise ClipError(f"{path}: cannot decode: {detail}")
    return frames


def _video_frames_pyav(path: Path, pick) -> list[np.ndarray]:
    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ClipError(f"{path}: cannot decode: {exc}") from None
    if not frames:
        raise ClipError(f"{path}: cannot decode: video has no frames")
    return [frames[int(i)] for i in pick(len(frames))]


def count_frame_files(folder: Path) -> int:
    return len(list(folder.glob(FRAME_PATTERN.replace("{:05}", "[0-9]" * 5))))


def read_frame_folder(folder: Path, num_seg: int, num_frames: int | None = None) -> list[np.ndarray]:
    """A UCF101 frame folder (``img_00001.jpg`` …, 1-based), sampled as PaddleVideo does."""
    count = num_frames if num_frames is not None else count_frame_files(folder)
    if count <= 0:
        raise ClipError(f"{folder}: no frames named {FRAME_PATTERN.format(1)}, ... in the folder")
    frames = []
    for idx in sample_indices(count, num_seg):
        file = folder / FRAME_PATTERN.format(idx + 1)
        try:
            with Image.open(file) as img:
                frames.append(np.asarray(img.convert("RGB")))
        except FileNotFoundError:
            raise ClipError(f"{file}: frame not found ({count} frames, segment sampling wants index {idx + 1})") from None
        except OSError as exc:
            raise ClipError(f"{file}: cannot read image: {exc}") from None
    return frames


def load_clip_frames(path: str | Path, num_seg: int, num_frames: int | None = None) -> list[np.ndarray]:
    """The sampled RGB frames of one video file or frame folder."""
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, num_seg, num_frames)
    if path.is_file():
        return decode_frames(path, num_seg)

    kind = special_kind(path)
    raise ClipError(f"{path}: not a regular file ({kind})" if kind else f"{path}: file not found")


def clip_tensor(path: str | Path, frames: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """Decoded frames -> the float32 ``[1, T, 3, S, S]`` tensor the model is fed."""
    try:
        return preprocess_frames(frames, cfg)[None]
    except ValueError as exc:
        raise ClipError(f"{path}: {exc}") from None


def load_clip_tensor(path: str | Path, cfg: PreprocessConfig, num_frames: int | None = None) -> np.ndarray:
    """One video file or frame folder -> the float32 ``[1, T, 3, S, S]`` tensor the model is fed."""
    return clip_tensor(path, load_clip_frames(path, cfg.num_seg, num_frames), cfg)
