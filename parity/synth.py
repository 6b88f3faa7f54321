"""Generate labelled action clips as real encoded video files.

Each clip shows a few textured squares moving together left, right, up or down over a noisy
background.
Every single frame looks alike across classes, so the class is visible only in the motion.
Clips alternate between H.264 in .mp4 and MPEG-4 Part 2 / MJPEG in .avi, through PyAV.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .optional import lazy

av = lazy("av")

CLASSES = ("move_left", "move_right", "move_up", "move_down")
_DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
# (container suffix, codec, pixel format)
_CODECS = (("mp4", "libx264", "yuv420p"), ("avi", "mpeg4", "yuv420p"), ("avi", "mjpeg", "yuvj420p"))


@dataclass(frozen=True)
class SynthSpec:
    """What the generated set looks like; its hash keys the on-disk cache."""

    clips_per_class: int = 12
    frames: int = 32
    width: int = 320
    height: int = 240
    object_size: int = 40
    objects: int = 4
    speed: tuple[float, float] = (5.0, 6.5)  # pixels per frame
    fps: int = 25
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def render_clip(rng: np.random.Generator, direction: tuple[int, int], spec: SynthSpec) -> np.ndarray:
    """Frames ``[F, H, W, 3]`` uint8 of one clip whose objects all move in ``direction``."""
    h, w, s = spec.height, spec.width, spec.object_size
    # Background: a random grey level with static grain, plus fresh sensor noise every frame.
    background = rng.uniform(60, 190) + rng.normal(0, 22, size=(h, w, 3))
    speed = rng.uniform(*spec.speed)
    travel = speed * (spec.frames - 1)
    dx, dy = direction
    objects = []
    for _ in range(spec.objects):
        # A high-contrast checker of random 8-pixel cells in a random colour.
        cells = np.kron(rng.integers(0, 2, size=(s // 8 + 1, s // 8 + 1, 1)), np.ones((8, 8, 1)))[:s, :s]
        colour = rng.uniform(0, 255, size=(1, 1, 3))
        texture = cells * np.maximum(colour, 200 - colour * 0.3) + (1 - cells) * colour * 0.25
        # Paths are centred along the motion and spread across it, inside what CenterCrop keeps.
        cx = w / 2 - dx * travel / 2 + (dx == 0) * rng.uniform(-0.3, 0.3) * w
        cy = h / 2 - dy * travel / 2 + (dy == 0) * rng.uniform(-0.3, 0.3) * h
        objects.append((texture, cx, cy))
    frames = np.empty((spec.frames, h, w, 3), dtype=np.uint8)
    for f in range(spec.frames):
        img = background + rng.normal(0, 8, size=(h, w, 3))
        for texture, cx, cy in objects:
            x0 = int(round(cx + dx * speed * f - s / 2))
            y0 = int(round(cy + dy * speed * f - s / 2))
            xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
            if xb <= xa or yb <= ya:  # the object is outside the frame
                continue
            img[ya:yb, xa:xb] = texture[ya - y0 : yb - y0, xa - x0 : xb - x0]
        frames[f] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fps: int = 25) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        elif codec in ("mpeg4", "mjpeg"):
            stream.options = {"qscale": "3"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def generate_split(out_dir: Path, split: str, spec: SynthSpec) -> Path:
    """Write one split's clips under ``out_dir/split`` and a UCF101-style list ``out_dir/split.txt``.

    Returns the list path. Paths in the list are relative to the list's folder.
    """
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    seed = spec.seed * 1000 + {"train": 1, "val": 2, "test": 3}.get(split, 9)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(spec.clips_per_class):
        for label, name in enumerate(CLASSES):
            suffix, codec, pix_fmt = _CODECS[(i * len(CLASSES) + label) % len(_CODECS)]
            rel = f"{split}/{name}_{i:03d}.{suffix}"
            frames = render_clip(rng, _DIRECTIONS[name], spec)
            write_video(out_dir / rel, frames, codec, pix_fmt, spec.fps)
            lines.append(f"{rel} {label}")
    list_path = out_dir / f"{split}.txt"
    list_path.write_text("\n".join(lines) + "\n")
    write_label_names(out_dir / "labels.txt")
    return list_path


def write_label_names(path: Path) -> None:
    Path(path).write_text("".join(f"{i} {name}\n" for i, name in enumerate(CLASSES)))


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Label-aware motion augmentation for a batch ``[B, T, 3, S, S]`` of these clips.

    Flips, transposes and time reversal move the object another way, and the label follows the
    new direction. Every texture and background then appears under every label, so only the
    motion can explain the class.
    """
    names = list(CLASSES)
    x = x.copy()
    y = y.copy()
    for b in range(len(x)):
        dx, dy = _DIRECTIONS[names[y[b]]]
        clip = x[b]
        if rng.random() < 0.5:  # mirror left-right
            clip, dx = clip[..., ::-1], -dx
        if rng.random() < 0.5:  # mirror up-down
            clip, dy = clip[..., ::-1, :], -dy
        if rng.random() < 0.5:  # swap the axes
            clip, dx, dy = clip.swapaxes(-1, -2), dy, dx
        if rng.random() < 0.5:  # play backwards
            clip, dx, dy = clip[::-1], -dx, -dy
        x[b] = clip
        y[b] = names.index(next(n for n, d in _DIRECTIONS.items() if d == (dx, dy)))
    return x, y
