"""ppTSM_Inference_helper (PP-TSM, PP-TSMv2, TSM, MoViNet): the harness's own PaddleVideo preprocessing (parity/preprocess.py).

decord, the middle frame of each of ``num_seg`` parts, Scale(short_size) to a fixed 4:3 with PIL bilinear,
CenterCrop(target_size) with Python's round, /255 and ImageNet mean/std: ``[1, num_seg, 3, S, S]`` (``ntchw``).
The head averages the segments, so the model gives one row per clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import HarnessError
from ..preprocess import PreprocessConfig, load_clip_tensor
from . import Recipe, register


@register
@dataclass(frozen=True)
class PPTSMRecipe(Recipe):
    helper = "ppTSM_Inference_helper"
    defaults = {"num_seg": 8, "seg_len": 1, "short_size": 256, "target_size": 224, "top_k": 1}
    models = "PP-TSM, PP-TSMv2, TSM, MoViNet"
    decoder = "decord"
    layouts = ("ntchw",)

    def config(self) -> PreprocessConfig:
        if self.params["seg_len"] != 1:
            raise HarnessError(f"{self.helper}: seg_len {self.params['seg_len']} is not supported; PP-TSM samples one frame per segment (seg_len 1)")
        return PreprocessConfig.for_size(self.params["num_seg"], self.params["target_size"], self.params["short_size"])

    def preprocess(self, path: str | Path) -> list[np.ndarray]:
        return [np.ascontiguousarray(load_clip_tensor(path, self.config()))]
