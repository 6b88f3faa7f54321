"""PP-TSM models, in PaddleVideo's Recognizer2D shape: ``[N, T, 3, H, W]`` in, logits out."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..optional import lazy

# Their layers subclass paddle.nn.Layer, so importing them imports paddle: they load when a model is built.
recognizer = lazy("parity.models.recognizer")
pptsm_v2 = lazy("parity.models.pptsm_v2")
pptsm_r50 = lazy("parity.models.pptsm_r50")


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


def build_model(spec: ModelSpec) -> recognizer.Recognizer2D:
    if spec.arch == "pptsm_v2":
        backbone = pptsm_v2.PPTSM_v2_LCNet(
            scale=spec.scale,
            depths=tuple(spec.depths),
            class_num=spec.num_classes,
            dropout_prob=spec.dropout,
            num_seg=spec.num_seg,
            use_temporal_att=spec.temporal_attention,
            class_expand=spec.class_expand,
        )
        return recognizer.Recognizer2D(backbone, spec.num_seg)
    if spec.arch == "pptsm_r50":
        return recognizer.Recognizer2D(pptsm_r50.ResNetTweaksTSM(num_seg=spec.num_seg), spec.num_seg,
                                       pptsm_r50.ppTSMHead(spec.num_classes, num_seg=spec.num_seg))
    raise ValueError(f"unknown architecture {spec.arch!r} (known: pptsm_v2, pptsm_r50)")
