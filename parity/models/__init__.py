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
    temporal_attention: bool = False  # PaddleVideo's PPTSM_v2 default; LTA is on only in its 16-frame DML config
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


class Recognizer2D(nn.Layer):
    """Folds the segment axis into the batch, runs the backbone, then the head (if any).

    PP-TSMv2 keeps its classifier in the backbone (its MoViNetHead passes through), so it has
    no head here; PP-TSM v1 has ``head`` = ppTSMHead.
    """

    def __init__(self, backbone: nn.Layer, num_seg: int, head: nn.Layer | None = None):
        super().__init__()
        self.backbone = backbone
        self.num_seg = num_seg
        if head is not None:
            self.head = head
        self._has_head = head is not None

    def forward(self, x):
        # [N, T, 3, H, W] -> [N*T, 3, H, W]
        x = x.reshape([-1] + list(x.shape[2:]))
        x = self.backbone(x)
        return self.head(x) if self._has_head else x

    def rep(self):
        if hasattr(self.backbone, "rep"):
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
        return Recognizer2D(backbone, spec.num_seg)
    if spec.arch == "pptsm_r50":
        from .pptsm_r50 import ResNetTweaksTSM, ppTSMHead

        return Recognizer2D(ResNetTweaksTSM(num_seg=spec.num_seg), spec.num_seg, ppTSMHead(spec.num_classes, num_seg=spec.num_seg))
    raise ValueError(f"unknown architecture {spec.arch!r} (known: pptsm_v2, pptsm_r50)")
