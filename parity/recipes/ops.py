"""Building blocks of PaddleVideo's inference pipelines, written from their documented behaviour.

Each block is one rule of PaddleVideo's ``loader/pipelines`` (decoding, sampling, scaling, cropping,
normalizing), with its rounding and its float precision stated, so a recipe is a short list of calls
whose result equals the helper's to the bit. The recipe modules share them; append new blocks at the end.

Frames are RGB uint8 ``[H, W, 3]`` arrays until they are normalized.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..preprocess import ClipError, crop_box, scale_size, video_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- decoding


def decord_frames(path: str | Path, pick, per_frame: bool = False) -> list[np.ndarray]:
    """The frames of ``path`` at the indices ``pick(frame_count)`` returns (``parity.preprocess.video_frames``: decord,
    else PyAV), after the one-line error for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: file not found")
    return video_frames(path, pick, per_frame)


def start_end_index(video_size: float, clip_size: float, clip_idx: int = 0, num_clips: int = 1) -> tuple[float, float]:
    """First and last frame index of clip ``clip_idx`` of ``num_clips`` (PaddleVideo's test-mode clip window)."""
    delta = max(video_size - clip_size, 0)
    start = delta * clip_idx / num_clips
    return start, start + clip_size - 1


def pyav_test_clip(path: str | Path, num_seg: int, sampling_rate: int = 32, target_fps: int = 30) -> tuple[list[np.ndarray], float, float]:
    """PaddleVideo's ``VideoDecoder(backend="pyav", mode="test")``: the frames of the first clip, and its
    ``start_idx``/``end_idx``.

    The clip spans ``sampling_rate * num_seg / target_fps * fps`` frames from frame 0. With a known stream
    duration, that is turned into a pts window (``duration / frames`` per frame, truncated to int), the decoder
    seeks to pts 0 and keeps frames with pts in the window plus the first one past it; without a duration every
    frame is kept. Frames are ordered by pts and converted with ``to_rgb()``.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            clip_size = sampling_rate * num_seg / target_fps * fps
            if stream.duration is None:
                first_pts, last_pts = 0, math.inf
            else:
                if not stream.frames:
                    raise ClipError(f"{path}: the stream does not state its frame count (PaddleVideo divides by it)")
                start, end = start_end_index(stream.frames, clip_size)
                per_frame = stream.duration / stream.frames
                first_pts, last_pts = int(start * per_frame), int(end * per_frame)
            container.seek(max(first_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
            by_pts = {}
            for frame in container.decode(video=0):
                if frame.pts < first_pts:
                    continue
                by_pts[frame.pts] = frame
                if frame.pts > last_pts:
                    break
            frames = [by_pts[pts].to_rgb().to_ndarray() for pts in sorted(by_pts)]
    except (av.error.FFmpegError, ValueError, IndexError, TypeError) as exc:
        raise ClipError(f"{path}: cannot decode: {exc}") from None
    if not frames:
        raise ClipError(f"{path}: cannot decode: video has no frames")
    start, end = start_end_index(len(frames), clip_size)  # test mode: the first clip, with or without a duration
    return frames, start, end


# ----------------------------------------------------------------------------- sampling (0-based video indices)


def middle_indices(num_frames: int, num_seg: int, seg_len: int = 1) -> list[int]:
    """Sampler(valid_mode=True): ``seg_len`` consecutive frames from the middle of each of ``num_seg`` equal parts.

    With ``avg = int(num_frames / num_seg)``: start ``(avg - 1) // 2 + i * avg`` when ``avg >= seg_len``,
    ``i * avg`` when ``avg >= 1``, else ``i``; indices wrap modulo the frame count.
    """
    avg = int(num_frames / num_seg)
    out = []
    for i in range(num_seg):
        if avg >= seg_len:
            first = (avg - 1) // 2 + i * avg
        elif avg >= 1:
            first = i * avg
        else:
            first = i
        out += [j % num_frames for j in range(first, first + seg_len)]
    return out


def left_middle_indices(num_frames: int, num_seg: int) -> list[int]:
    """Sampler(valid_mode=True, select_left=True): ``int(avg / 2 + avg * i)`` with the float ``avg = frames / num_seg``
    (the left one of two middle frames); every index is 0 when there are no more frames than segments."""
    if num_frames <= num_seg:
        return [0] * num_seg
    avg = num_frames / num_seg
    return [int(avg / 2.0 + avg * i) % num_frames for i in range(num_seg)]


def interval_indices(num_frames: int, num_seg: int, seg_len: int, frame_interval: int) -> list[int]:
    """Sampler(frame_interval=..., valid_mode=True): ``num_seg`` clips of ``seg_len`` frames ``frame_interval`` apart.

    Clip starts are ``int(avg * i + avg / 2)`` with ``avg = (frames - seg_len * frame_interval + 1) / num_seg`` (all 0
    when the video is shorter than one clip span minus one); indices wrap modulo the frame count.
    """
    span = seg_len * frame_interval
    avg = (num_frames - span + 1) / float(num_seg)
    if num_frames > span - 1:
        starts = (np.arange(num_seg) * avg + avg / 2.0).astype(np.int64)
    else:
        starts = np.zeros(num_seg, dtype=np.int64)
    offsets = starts[:, None] + np.arange(seg_len)[None, :] * frame_interval
    return [int(i) for i in np.mod(offsets, num_frames).ravel()]


# ----------------------------------------------------------------------------- geometry


def fixed_ratio_size(width: int, height: int, short_size: int) -> tuple[int, int]:
    """Scale(fixed_ratio=True): short side -> ``short_size``, long side ``int(short_size * 4 / 3)`` (the rule
    parity/preprocess.py has for PP-TSM, kept there)."""
    return scale_size(width, height, short_size)


def keep_ratio_rounded_size(width: int, height: int, short_size: int) -> tuple[int, int]:
    """Scale(keep_ratio=True, do_round=True): both sides times ``short_size / short side``, ``int(x + 0.5)``."""
    factor = short_size / (width if width <= height else height)
    return int(width * float(factor) + 0.5), int(height * float(factor) + 0.5)


def is_short_side(width: int, height: int, size: int) -> bool:
    """Scale and JitterScale leave a frame alone whose short side already is ``size``."""
    return (width <= height and width == size) or (height <= width and height == size)


def cv2_resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_LINEAR resize of a uint8 frame to ``size`` = (w, h)."""
    import cv2

    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def center_crop(frame: np.ndarray, target: int) -> np.ndarray:
    """CenterCrop(do_round=True) of an ``[H, W, 3]`` array: offsets ``int(round((side - target) / 2))`` with Python's
    round (half to even), the rule parity/preprocess.py's ``crop_box`` holds."""
    height, width = frame.shape[:2]
    check_crop(width, height, target)
    x1, y1, x2, y2 = crop_box(width, height, target)
    return frame[y1:y2, x1:x2]


def check_crop(width: int, height: int, target: int) -> None:
    if width < target or height < target:
        raise ValueError(f"frame {width}x{height} is smaller than the crop {target}")


def ten_crop(frames: list[np.ndarray], target: int) -> list[np.ndarray]:
    """TenCrop: four corners and the center (offsets in quarter steps of ``(side - target) // 4``), each followed by
    its left-right mirror; every view holds all frames in order: ``[c0 x T, c0 flipped x T, c1 x T, ...]``."""
    height, width = frames[0].shape[:2]
    check_crop(width, height, target)
    w_step, h_step = (width - target) // 4, (height - target) // 4
    corners = ((0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step))
    views = []
    for x, y in corners:
        crops = [f[y:y + target, x:x + target] for f in frames]
        views += crops + [c[:, ::-1] for c in crops]
    return views


# ----------------------------------------------------------------------------- pixels


def normalize_tchw(frames: list[np.ndarray], mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Image2Array then Normalization: float32 ``[T, 3, H, W]``, /255, minus mean, over std, all in float32."""
    arr = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2)
    arr = arr / 255.0
    arr -= np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    arr /= np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return arr


def normalize_0_255_cthw(frames: list[np.ndarray], mean, std) -> np.ndarray:
    """Normalization(inplace=True) then Image2Array('cthw'): float32 ``[3, T, H, W]`` of 0-255 pixels minus mean
    (float32), times ``1 / std`` taken in float64 and rounded once to float32 (OpenCV's subtract and multiply)."""
    arr = np.stack(frames).astype(np.float32)
    arr -= np.asarray(mean, dtype=np.float32)
    arr = (arr * (1.0 / np.asarray(std, dtype=np.float32).astype(np.float64))).astype(np.float32)
    return arr.transpose(3, 0, 1, 2)


def normalize_float64_thwc(frames: np.ndarray, mean, std) -> np.ndarray:
    """Normalization(tensor_shape=[1, 1, 1, 3]) on PyAV frames: /255, minus mean, over std in float64 (the mean and
    std themselves rounded to float32 first), then one rounding to float32 (``paddle.to_tensor(..., float32)``)."""
    arr = np.asarray(frames) / 255.0
    arr -= np.asarray(mean, dtype=np.float32).reshape(1, 1, 1, 3)
    arr /= np.asarray(std, dtype=np.float32).reshape(1, 1, 1, 3)
    return arr.astype(np.float32)


def jitter_scale_size(width: int, height: int, size: int) -> tuple[int, int]:
    """JitterScale(size, size): short side -> ``size``, long side ``floor(long / short * size)``."""
    if width < height:
        return size, int(math.floor((float(height) / width) * size))
    return int(math.floor((float(width) / height) * size)), size


def _bilinear_taps(in_size: int, out_size: int, single_position: bool):
    """Paddle's CPU bilinear (align_corners=False, align_mode=0) along one axis: the low and high source index and
    their float32 weights. The ratio is float32 ``in / out``; the source index is ``ratio * (i + 0.5) - 0.5`` taken in
    double and truncated, clamped at 0. The weight's source position is that double rounded to float32 for rows,
    but computed in float32 throughout for columns (``single_position``; Paddle 3's kernel), clamped at 0."""
    ratio = np.float32(in_size) / np.float32(out_size) if out_size > 1 else np.float32(0)
    pos = np.float64(ratio) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5
    low = np.maximum(np.trunc(pos).astype(np.int64), 0)
    high = np.minimum(low + 1, in_size - 1)
    if single_position:
        src = ratio * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    else:
        src = pos.astype(np.float32)
    src = np.maximum(src, np.float32(0))
    w_high = src - low.astype(np.float32)
    w_low = np.float32(1) - w_high
    return low, high, w_low, w_high


def paddle_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``paddle.nn.functional.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False)`` on CPU for a
    float32 ``[..., H, W]`` array, bit for bit as Paddle 3 (checked on 3.3.1; Paddle 2's kernel took the column
    position in double too, which moves about one value in a thousand by one float32 step), in its order of operations: the four taps summed left to right,
    (low row, low col), (high row, low col), (low row, high col), (high row, high col), each ``pixel * w_row * w_col``."""
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return x.copy()
    y0, y1, wy0, wy1 = _bilinear_taps(in_h, out_h, single_position=False)
    x0, x1, wx0, wx1 = _bilinear_taps(in_w, out_w, single_position=True)
    wy0, wy1 = wy0[:, None], wy1[:, None]
    rows0, rows1 = x[..., y0, :], x[..., y1, :]
    out = rows0[..., x0] * wy0 * wx0
    out += rows1[..., x0] * wy1 * wx0
    out += rows0[..., x1] * wy0 * wx1
    out += rows1[..., x1] * wy1 * wx1
    return out


def multi_center_crop(x: np.ndarray, target: int) -> np.ndarray:
    """MultiCenterCrop on a ``[C, T, H, W]`` array: the center, left and right squares (rows centered with
    ``int((h - target) / 2)``), concatenated along T: ``[C, 3T, target, target]``."""
    h, w = x.shape[-2:]
    check_crop(w, h, target)
    y = int((h - target) / 2.0) if h > target else 0
    xs = (int((w - target) / 2.0) if w > target else 0, 0, w - target if w > target else 0)
    return np.concatenate([x[:, :, y:y + target, x1:x1 + target] for x1 in xs], axis=1)
