"""PP-TSMv2: a PP-LCNetV2 backbone with temporal shift (and optional temporal attention).

Written from the architecture facts in PaddleVideo's PP-TSMv2 (see shared/reference/pptsm.md).
Layer and parameter names follow PaddleVideo's so that its ``.pdparams`` load by name.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# stage -> (in_channels, dw kernel, split_pw, use_rep, use_se, use_shortcut)
NET_CONFIG = {
    "stage1": (64, 3, False, False, False, False),
    "stage2": (128, 3, False, False, False, False),
    "stage3": (256, 5, True, True, True, False),
    "stage4": (512, 5, False, True, False, True),
}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNLayer(nn.Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()),
            bias_attr=False,
        )
        self.bn = nn.BatchNorm2D(out_channels, epsilon=1e-5)
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class SEModule(nn.Layer):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1)

    def forward(self, x):
        w = self.conv2(self.relu(self.conv1(self.avg_pool(x))))
        return x * F.sigmoid(w)


class DepthwiseSeparable(nn.Layer):
    """One LCNetV2 block: depthwise conv (optionally re-parameterizable), SE, pointwise conv(s)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        stride,
        dw_size=3,
        split_pw=False,
        use_rep=False,
        use_se=False,
        use_shortcut=False,
    ):
        super().__init__()
        self.use_rep = use_rep
        self.use_se = use_se
        self.split_pw = split_pw
        # The residual add exists only where the shapes allow it (stage4, blocks after the first).
        self.use_shortcut = use_shortcut and stride == 1 and in_channels == out_channels
        self.dw_size = dw_size
        self.is_repped = False
        if use_rep:
            self.dw_conv_list = nn.LayerList(
                [
                    ConvBNLayer(in_channels, in_channels, k, stride, groups=in_channels, act=False)
                    for k in range(dw_size, 0, -2)
                    if not (k == 1 and stride != 1)
                ]
            )
            # The single depthwise conv that rep() folds the branches into.
            self.dw_conv = nn.Conv2D(
                in_channels, in_channels, dw_size, stride, padding=(dw_size - 1) // 2, groups=in_channels
            )
        else:
            self.dw_conv = ConvBNLayer(in_channels, in_channels, dw_size, stride, groups=in_channels)
        self.act = nn.ReLU()
        if use_se:
            self.se = SEModule(in_channels)
        if split_pw:
            mid = int(out_channels * 0.5)
            self.pw_conv_1 = ConvBNLayer(in_channels, mid, 1, 1)
            self.pw_conv_2 = ConvBNLayer(mid, out_channels, 1, 1)
        else:
            self.pw_conv = ConvBNLayer(in_channels, out_channels, 1, 1)

    def forward(self, x):
        shortcut = x
        if self.use_rep:
            if self.is_repped:
                x = self.act(self.dw_conv(x))
            else:
                y = self.dw_conv_list[0](x)
                for branch in self.dw_conv_list[1:]:
                    y = y + branch(x)
                x = self.act(y)
        else:
            x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        if self.split_pw:
            x = self.pw_conv_2(self.pw_conv_1(x))
        else:
            x = self.pw_conv(x)
        if self.use_shortcut:
            x = x + shortcut
        return x

    def rep(self):
        """Fold the parallel ConvBN branches into ``dw_conv`` (a 5x5 depthwise conv with bias)."""
        if not self.use_rep or self.is_repped:
            return
        kernel = np.zeros(self.dw_conv.weight.shape, dtype="float32")
        bias = np.zeros(self.dw_conv.bias.shape, dtype="float32")
        for branch in self.dw_conv_list:
            k, b = _fuse_conv_bn(branch)
            pad = (self.dw_size - k.shape[-1]) // 2
            kernel += np.pad(k, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            bias += b
        self.dw_conv.weight.set_value(kernel)
        self.dw_conv.bias.set_value(bias)
        self.is_repped = True


def _fuse_conv_bn(branch: ConvBNLayer):
    w = branch.conv.weight.numpy()
    bn = branch.bn
    std = np.sqrt(bn._variance.numpy() + bn._epsilon)
    t = bn.weight.numpy() / std
    return w * t.reshape(-1, 1, 1, 1), bn.bias.numpy() - bn._mean.numpy() * t


class GlobalAttention(nn.Layer):
    """Lightweight temporal attention (LTA): one weight per frame from the frame's mean."""

    def __init__(self, num_seg):
        super().__init__()
        self.num_seg = num_seg
        self.fc = nn.Linear(num_seg, num_seg)

    def forward(self, x):
        _, c, h, w = x.shape
        frames = x
        x = paddle.reshape(x, [-1, self.num_seg, c * h * w])
        x = paddle.mean(x, axis=2)
        # PaddleVideo keeps this squeeze; it is a no-op on [N, T] in Paddle but paddle2onnx
        # turns it into Squeeze(axes=[1]), which ONNX Runtime rejects. Kept so that our
        # exports carry the same trap as PaddleVideo's.
        x = x.squeeze(-1)
        attention = F.sigmoid(self.fc(x))
        attention = paddle.reshape(attention, [-1, self.num_seg, 1, 1, 1])
        frames = paddle.reshape(frames, [-1, self.num_seg, c, h, w])
        y = paddle.multiply(frames, attention)
        return paddle.reshape(y, [-1, c, h, w])


class PPTSM_v2_LCNet(nn.Layer):
    """The PP-TSMv2 backbone; it also holds the classifier (``last_conv`` and ``fc``)."""

    def __init__(
        self,
        scale=1.0,
        depths=(2, 2, 6, 2),
        class_num=400,
        dropout_prob=0.2,
        num_seg=8,
        use_temporal_att=False,
        class_expand=1280,
    ):
        super().__init__()
        self.num_seg = num_seg
        self.use_temporal_att = use_temporal_att
        self.scale = scale
        self.stem = nn.Sequential(
            ConvBNLayer(3, make_divisible(32 * scale), 3, 2),
            DepthwiseSeparable(make_divisible(32 * scale), make_divisible(64 * scale), stride=1, dw_size=3),
        )
        stages = []
        for i, (in_ch, k, split_pw, use_rep, use_se, use_shortcut) in enumerate(NET_CONFIG.values()):
            blocks = [
                DepthwiseSeparable(
                    make_divisible((in_ch if j == 0 else in_ch * 2) * scale),
                    make_divisible(in_ch * 2 * scale),
                    stride=2 if j == 0 else 1,
                    dw_size=k,
                    split_pw=split_pw,
                    use_rep=use_rep,
                    use_se=use_se,
                    use_shortcut=use_shortcut,
                )
                for j in range(depths[i])
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.LayerList(stages)
        if use_temporal_att:
            self.global_attention = GlobalAttention(num_seg)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(
            make_divisible(NET_CONFIG["stage4"][0] * 2 * scale), class_expand, 1, bias_attr=False
        )
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        self.fc = nn.Linear(class_expand, class_num)

    def forward(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i == 2:  # temporal modules sit on the input of stage3
                if self.use_temporal_att:
                    x = self.global_attention(x)
                x = F.temporal_shift(x, self.num_seg, 1.0 / self.num_seg)
            x = stage(x)
        x = self.dropout(self.act(self.last_conv(self.avg_pool(x))))
        x = paddle.reshape(x, [-1, self.num_seg, x.shape[1]])
        x = paddle.mean(x, axis=1)
        return self.fc(x)

    def rep(self):
        for layer in self.sublayers():
            if isinstance(layer, DepthwiseSeparable):
                layer.rep()
