"""Recipes: each PaddleVideo inference helper's preprocessing and postprocessing (``tools/predict.py``'s
``INFERENCE: name: ..._Inference_helper``), one module per helper, behind one small interface.

A ``Recipe`` turns one video file into exactly what the helper's ``preprocess`` returns: one float32 array per
model input, in the model's input order, each with the helper's own leading dimension (1, or the views folded
into N). The model's output for one clip is ``[rows, classes]``; ``aggregate`` makes it ``[classes]`` as the
helper's ``postprocess`` does (the mean over the rows when there is more than one: the views).

Modules register their class with ``@register``; ``make(helper, params)`` builds one with the helper's own
defaults for what ``params`` leaves out (``defaults``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import HarnessError

RECIPES: dict[str, type[Recipe]] = {}


def register(cls: type[Recipe]) -> type[Recipe]:
    RECIPES[cls.helper] = cls
    return cls


@dataclass(frozen=True)
class Recipe:
    """One helper's preprocessing, with its parameters resolved (the helper's defaults, then the config's)."""

    helper: ClassVar[str] = ""  # PaddleVideo's class name, e.g. "ppTSN_Inference_helper"
    defaults: ClassVar[dict] = {}  # the helper's __init__ defaults (num_seg, seg_len, short_size, target_size, ...)
    models: ClassVar[str] = ""  # the models PaddleVideo deploys with it, for the README and errors
    decoder: ClassVar[str] = "decord"  # "decord" | "pyav": the helper's VideoDecoder backend
    layouts: ClassVar[tuple[str, ...]] = ("ntchw",)  # per model input: "ntchw" ([N, T, 3, H, W]) or "ncthw" ([N, 3, T, H, W])

    params: dict = field(default_factory=dict)

    @property
    def views(self) -> int:
        """Views per clip (TenCrop 10, UniformCrop 3, ...): the model's output rows for one clip."""
        return 1

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        """One video file -> the helper's inputs, bit for bit as PaddleVideo's own ``preprocess``."""
        raise NotImplementedError

    def aggregate(self, rows: np.ndarray) -> np.ndarray:
        """``[rows, classes]`` logits of one clip -> ``[classes]``, as the helper's ``postprocess`` (mean over views)."""
        rows = np.asarray(rows, dtype=np.float32)
        return rows[0] if len(rows) == 1 else rows.mean(axis=0)

    def to_dict(self) -> dict:
        return {"helper": self.helper, **self.params}


def make(helper: str, params: dict | None = None) -> Recipe:
    """The recipe of ``helper`` with the helper's defaults for what ``params`` leaves out."""
    _load()
    if helper not in RECIPES:
        raise HarnessError(f"INFERENCE name {helper!r} is not supported; supported: {', '.join(sorted(RECIPES))}")
    cls = RECIPES[helper]
    unknown = sorted(set(params or {}) - set(cls.defaults) - {"name"})
    if unknown:
        raise HarnessError(f"{helper}: unknown parameter(s) {', '.join(unknown)}; it takes {', '.join(cls.defaults)}")
    return cls({**cls.defaults, **{k: v for k, v in (params or {}).items() if k != "name"}})


def _load() -> None:
    """Import every recipe module once (each registers its class)."""
    from importlib import import_module  # cycle: the recipe modules import this package for Recipe and register

    for name in ("pptsm", "pptsn", "timesformer", "tokenshift", "videoswin", "slowfast"):
        try:
            import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
