"""The PaddleVideo Recognizer2D shape around a backbone (and head)."""
from __future__ import annotations

import paddle.nn as nn


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
