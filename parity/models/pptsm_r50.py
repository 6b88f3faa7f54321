"""PP-TSM v1: ResNet50-vd "tweaks" TSM backbone and ppTSMHead.

Written from the architecture facts of PaddleVideo's ResNetTweaksTSM and ppTSMHead.
Sublayer names follow PaddleVideo's (``conv1_1``, ``bb_{stage}_{block}.conv0._conv`` …,
``head.fc``) so that its ``.pdparams`` load by name.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

DEPTHS_50 = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)


class ConvBNLayer(nn.Layer):
    """Conv (no bias) + BN + optional leaky_relu; in tweaks mode a 2x2 avg pool comes first (vd)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, act=None, is_tweaks_mode=False):
        super().__init__()
        self.is_tweaks_mode = is_tweaks_mode
        self._pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True)
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
        self.act = act

    def forward(self, x):
        if self.is_tweaks_mode:
            x = self._pool2d_avg(x)
        x = self._batch_norm(self._conv(x))
        return F.leaky_relu(x) if self.act == "leaky_relu" else x


class BottleneckBlock(nn.Layer):
    def __init__(self, in_channels, out_channels, stride, shortcut, if_first, num_seg):
        super().__init__()
        self.num_seg = num_seg
        self.shortcut = shortcut
        self.conv0 = ConvBNLayer(in_channels, out_channels, 1, act="leaky_relu")
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3, stride=stride, act="leaky_relu")
        self.conv2 = ConvBNLayer(out_channels, out_channels * 4, 1)
        if not shortcut:
            self.short = ConvBNLayer(in_channels, out_channels * 4, 1, is_tweaks_mode=not if_first)

    def forward(self, x):
        # Residual temporal shift: only the conv branch sees shifted frames.
        y = F.temporal_shift(x, self.num_seg, 1.0 / self.num_seg)
        y = self.conv2(self.conv1(self.conv0(y)))
        residual = x if self.shortcut else self.short(x)
        return F.leaky_relu(residual + y)


class ResNetTweaksTSM(nn.Layer):
    def __init__(self, depths=DEPTHS_50, num_seg=8):
        super().__init__()
        self.num_seg = num_seg
        self.conv1_1 = ConvBNLayer(3, 32, 3, stride=2, act="leaky_relu")
        self.conv1_2 = ConvBNLayer(32, 32, 3, act="leaky_relu")
        self.conv1_3 = ConvBNLayer(32, 64, 3, act="leaky_relu")
        self.pool2D_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.block_list = []
        in_channels = 64
        for stage, (depth, width) in enumerate(zip(depths, WIDTHS)):
            for i in range(depth):
                block = self.add_sublayer(
                    f"bb_{stage}_{i}",
                    BottleneckBlock(
                        in_channels,
                        width,
                        stride=2 if i == 0 and stage != 0 else 1,
                        shortcut=i != 0,
                        if_first=stage == 0 and i == 0,
                        num_seg=num_seg,
                    ),
                )
                self.block_list.append(block)
                in_channels = width * 4

    def forward(self, x):
        x = self.pool2D_max(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        for block in self.block_list:
            x = block(x)
        return x


class ppTSMHead(nn.Layer):
    """avgpool, dropout (identity at inference), mean over segments, fc -> logits."""

    def __init__(self, num_classes, in_channels=2048, num_seg=8, drop_ratio=0.5):
        super().__init__()
        self.num_seg = num_seg
        self.in_channels = in_channels
        self.avgpool2d = nn.AdaptiveAvgPool2D((1, 1))
        self.dropout = nn.Dropout(p=drop_ratio) if drop_ratio else None
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.avgpool2d(x)
        if self.dropout is not None:
            x = self.dropout(x)
        x = paddle.reshape(x, [-1, self.num_seg, x.shape[1]])
        x = paddle.mean(x, axis=1)
        x = paddle.reshape(x, [-1, self.in_channels])
        return self.fc(x)
