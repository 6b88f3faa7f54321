"""PP-TSM models, in PaddleVideo's Recognizer2D shape: ``[N, T, 3, H, W]`` in, logits out."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import paddle.nn as nn


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model: saved next to its weights."""

    arch: str = "pptsm_v2"
    num_classes: int = 400
    num_seg: int = 8
    size: int = 224
    scale: float = 1.0
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    class_expand: int = 1280
    temporal_attention: bool = True
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


class Recognizer2D(nn.Layer):
    """Folds the segment axis into the batch and runs the backbone (which holds the classifier)."""

    def __init__(self, backbone: nn.Layer, num_seg: int):
        super().__init__()
        self.backbone = backbone
        self.num_seg = num_seg

    def forward(self, x):
        # [N, T, 3, H, W] -> [N*T, 3, H, W]
        x = x.reshape([-1] + list(x.shape[2:]))
        return self.backbone(x)

    def rep(self):
        self.backbone.rep()


def build_model(spec: ModelSpec) -> Recognizer2D:
    if spec.arch == "pptsm_v2":
        from .pptsm_v2 import PPTSM_v2_LCNet

        backbone = PPTSM_v2_LCNet(
            scale=spec.scale,
            depths=tuple(spec.depths),
            class_num=spec.num_classes,
            dropout_prob=spec.dropout,
            num_seg=spec.num_seg,
            use_temporal_att=spec.temporal_attention,
            class_expand=spec.class_expand,
        )
    else:
        raise ValueError(f"unknown architecture {spec.arch!r} (known: pptsm_v2)")
    return Recognizer2D(backbone, spec.num_seg)
