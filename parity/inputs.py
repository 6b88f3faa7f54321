"""Decoded, preprocessed clip tensors: each clip is decoded once per run, whatever reads it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .clips import Clip
from .preprocess import ClipError, PreprocessConfig, load_clip_tensor
from .progress import progress


@dataclass
class ClipInput:
    """One clip's tensor ``[1, T, 3, S, S]``, or the one-line reason it has none."""

    clip: Clip
    tensor: np.ndarray | None = None
    error: str | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.tensor is not None


def prepare_inputs(clips: list[Clip], cfg: PreprocessConfig, cache_dir: Path | None = None, desc: str = "decode") -> list[ClipInput]:
    """Decode and preprocess every clip once. A bad clip gets an error and the rest go on.

    With ``cache_dir``, tensors are also kept on disk keyed by the clip's sha256 and ``cfg``.
    """
    from .build import sha256_json

    inputs = []
    for clip in progress(clips, desc=desc, unit="clip"):
        item = ClipInput(clip)
        try:
            if not clip.path.exists():
                raise ClipError(f"{clip.path}: file not found")
            item.sha256 = clip_sha256(clip.path)
            cached = None
            if cache_dir is not None:
                cached = Path(cache_dir) / f"{sha256_json([item.sha256, cfg.to_dict()])[:24]}.npy"
                if cached.is_file():
                    item.tensor = np.load(cached)
            if item.tensor is None:
                item.tensor = load_clip_tensor(clip.path, cfg, clip.num_frames)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.save(cached, item.tensor)
        except ClipError as exc:
            item.error = str(exc)
        except OSError as exc:
            item.error = f"{clip.path}: cannot read: {exc.strerror or exc}"
        inputs.append(item)
    return inputs


def clip_sha256(path: Path) -> str:
    """sha256 of a video file, or of a frame folder's file names and contents."""
    from .build import sha256_file, sha256_json

    if path.is_dir():
        return sha256_json([(p.name, sha256_file(p)) for p in sorted(path.iterdir()) if p.is_file()])
    return sha256_file(path)
