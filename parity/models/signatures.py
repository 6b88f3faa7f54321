"""Tiny networks, one per input signature PaddleVideo's RGB recognizers deploy with (``tools/predict.py``'s helpers).

Each stands in for the zoo's weights in tests and the demo: a few real ops paddle2onnx converts (Conv2D/Conv3D,
BatchNorm, ReLU, pooling, reshape/transpose, temporal shift, a linear head), weights drawn from a seeded numpy
generator (the same bytes on every machine and Paddle version), no training. The head is scaled so that the
outputs are well spread (top-1 means something).

What each helper feeds and what PaddleVideo's model returns for it (tools/utils.py, tools/export_model.py,
paddlevideo/modeling):

- ``ntchw_views`` (ppTSN_Inference_helper): TenCrop's 10 views are folded into T, view-major, giving
  ``data_batch_0`` ``[N, 10*T, 3, H, W]``. Recognizer2D passes ``num_segs = input.shape[1]`` to ppTSNHead, which
  averages over all 10*T frames: **one row per clip**, the views averaged inside the graph.
- ``ntchw_views_in_n`` (ppTSM_Inference_helper's input, PP-TSM shaped with a temporal shift): ``[N, T, 3, H, W]``,
  one row per N. Feeding a clip's views as N entries gives one row per view; ``Base_Inference_helper.postprocess``
  averages rows when there are more than clips. No stock helper folds views into N: this one is for that branch.
- ``ncthw`` (TimeSformer_Inference_helper): UniformCrop's 3 views are folded into T, view-major, giving
  ``data_batch_0`` ``[N, 3, 3*T, H, W]`` (layout cthw). RecognizerTransformer.infer_step slices the views off T,
  runs each and averages the scores: **one row per clip**. VideoSwin is the same with one view.
- ``slowfast`` (SlowFast_Inference_helper): ``slow_input`` ``[N, 3, T/alpha, H, W]`` then ``fast_input``
  ``[N, 3, T, H, W]`` (export_model.py's names and order; PackOutput's slow path is T/alpha frames taken from the
  fast path). SlowFastHead applies a **softmax** at inference: the graph outputs probabilities, one row per clip.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# The spread of each class's head output across a seeded random batch (its standard deviation), after scaling.
LOGIT_SPREAD = 2.0


@dataclass(frozen=True)
class Signature:
    """One input signature: what a helper feeds, and what the model gives back for one clip."""

    name: str
    helper: str  # the PaddleVideo inference helper whose input this is
    inputs: tuple[str, ...]  # input names, in the model's order
    shapes: tuple[tuple[int, ...], ...]  # per input; -1 is the batch dimension (None in the InputSpec)
    layouts: tuple[str, ...]  # per input: "ntchw" ([N, T, 3, H, W]) or "ncthw" ([N, 3, T, H, W])
    num_seg: int  # frames per view (the fast path's frames for SlowFast)
    views: int  # views per clip (folded into T, or into N when ``batch_per_clip`` > 1)
    batch_per_clip: int  # entries of the batch dimension one clip takes (its views when they are folded into N)
    rows_per_clip: int  # output rows one clip gives
    num_classes: int
    size: int
    output: str  # "logits" | "probabilities" (SlowFast's head ends in a softmax)
    alpha: int = 1  # SlowFast: the fast path's frames per slow frame

    def input_specs(self) -> list:
        return [paddle.static.InputSpec([None, *shape[1:]], "float32", name=name) for name, shape in zip(self.inputs, self.shapes)]

    def feed(self, clips: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs for ``clips`` clips (standard normal, as normalized frames are), by name in the model's order."""
        rng = np.random.default_rng(seed)
        batch = clips * self.batch_per_clip
        return {name: rng.standard_normal((batch, *shape[1:])).astype(np.float32) for name, shape in zip(self.inputs, self.shapes)}

    def to_dict(self) -> dict:
        return asdict(self)


NUM_CLASSES = 5
SIZE = 32

SIGNATURES: dict[str, Signature] = {
    s.name: s
    for s in (
        Signature("ntchw_views", "ppTSN_Inference_helper", ("data_batch_0",), ((-1, 10 * 3, 3, SIZE, SIZE),), ("ntchw",),
                  num_seg=3, views=10, batch_per_clip=1, rows_per_clip=1, num_classes=NUM_CLASSES, size=SIZE, output="logits"),
        Signature("ntchw_views_in_n", "ppTSM_Inference_helper", ("data_batch_0",), ((-1, 4, 3, SIZE, SIZE),), ("ntchw",),
                  num_seg=4, views=3, batch_per_clip=3, rows_per_clip=3, num_classes=NUM_CLASSES, size=SIZE, output="logits"),
        Signature("ncthw", "TimeSformer_Inference_helper", ("data_batch_0",), ((-1, 3, 3 * 4, SIZE, SIZE),), ("ncthw",),
                  num_seg=4, views=3, batch_per_clip=1, rows_per_clip=1, num_classes=NUM_CLASSES, size=SIZE, output="logits"),
        Signature("slowfast", "SlowFast_Inference_helper", ("slow_input", "fast_input"),
                  ((-1, 3, 8 // 4, SIZE, SIZE), (-1, 3, 8, SIZE, SIZE)), ("ncthw", "ncthw"),
                  num_seg=8, views=1, batch_per_clip=1, rows_per_clip=1, num_classes=NUM_CLASSES, size=SIZE, output="probabilities",
                  alpha=4),
    )
}


class ConvBNReLU(nn.Layer):
    """conv (no bias) -> BatchNorm -> ReLU, in 2D or 3D."""

    def __init__(self, dims: int, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        conv, bn = (nn.Conv2D, nn.BatchNorm2D) if dims == 2 else (nn.Conv3D, nn.BatchNorm3D)
        self.conv = conv(cin, cout, kernel, stride=stride, padding=padding, bias_attr=False)
        self.bn = bn(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class FramesRecognizer(nn.Layer):
    """Recognizer2D shaped: ``[N, F, 3, H, W]`` -> frames folded into N -> 2D convs -> mean over the F frames -> fc.

    ``shift``: a temporal shift (PP-TSM's ``F.temporal_shift``, 1/4 of the channels) over segments of F frames.
    """

    def __init__(self, frames: int, num_classes: int, shift: bool = False, width: int = 8):
        super().__init__()
        self.frames, self.shift = frames, shift
        self.stem = ConvBNReLU(2, 3, width, 3, stride=2, padding=1)
        self.body = ConvBNReLU(2, width, 2 * width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = x.reshape([-1, *x.shape[2:]])  # [N*F, 3, H, W]
        x = self.stem(x)
        if self.shift:
            x = F.temporal_shift(x, self.frames, 0.25)
        x = self.pool(self.body(x)).reshape([-1, self.frames, self.fc.weight.shape[0]])
        return self.fc(x.mean(axis=1))


class ViewsRecognizer3D(nn.Layer):
    """RecognizerTransformer shaped: ``[N, 3, V*T, H, W]`` -> the V views cut off T -> 3D convs on each -> scores averaged."""

    def __init__(self, views: int, frames: int, num_classes: int, width: int = 8):
        super().__init__()
        self.views, self.frames = views, frames
        self.stem = ConvBNReLU(3, 3, width, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.body = ConvBNReLU(3, width, 2 * width, (3, 3, 3), stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool3D(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        h, w = x.shape[-2:]
        x = x.reshape([-1, 3, self.views, self.frames, h, w]).transpose([0, 2, 1, 3, 4, 5])
        x = x.reshape([-1, 3, self.frames, h, w])  # [N*V, 3, T, H, W], view-major as UniformCrop stacks them
        x = self.pool(self.body(self.stem(x))).flatten(1)
        return self.fc(x).reshape([-1, self.views, self.fc.weight.shape[1]]).mean(axis=1)


class TinySlowFast(nn.Layer):
    """SlowFast shaped: two 3D paths, a time-strided lateral conv from fast into slow, pooled, concatenated, fc, softmax."""

    def __init__(self, alpha: int, num_classes: int, width: int = 8):
        super().__init__()
        fast = width // 2
        self.slow_stem = ConvBNReLU(3, 3, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.fast_stem = ConvBNReLU(3, 3, fast, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.lateral = nn.Conv3D(fast, fast, (5, 1, 1), stride=(alpha, 1, 1), padding=(2, 0, 0), bias_attr=False)
        self.slow_body = ConvBNReLU(3, width + fast, 2 * width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.fast_body = ConvBNReLU(3, fast, fast, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.pool = nn.AdaptiveAvgPool3D(1)
        self.fc = nn.Linear(2 * width + fast, num_classes)

    def forward(self, slow, fast):
        fast = self.fast_stem(fast)
        slow = paddle.concat([self.slow_stem(slow), self.lateral(fast)], axis=1)
        pooled = paddle.concat([self.pool(self.slow_body(slow)).flatten(1), self.pool(self.fast_body(fast)).flatten(1)], axis=1)
        return F.softmax(self.fc(pooled), axis=-1)

    def logits(self, slow, fast):
        """The head before its softmax (used to scale it)."""
        fast = self.fast_stem(fast)
        slow = paddle.concat([self.slow_stem(slow), self.lateral(fast)], axis=1)
        return self.fc(paddle.concat([self.pool(self.slow_body(slow)).flatten(1), self.pool(self.fast_body(fast)).flatten(1)], axis=1))


def build(signature: Signature | str, seed: int = 0) -> nn.Layer:
    """The tiny network of ``signature`` in eval mode, with seeded weights and a head scaled to ``LOGIT_SPREAD``."""
    sig = SIGNATURES[signature] if isinstance(signature, str) else signature
    if sig.name == "ntchw_views":
        model = FramesRecognizer(sig.views * sig.num_seg, sig.num_classes)
    elif sig.name == "ntchw_views_in_n":
        model = FramesRecognizer(sig.num_seg, sig.num_classes, shift=True)
    elif sig.name == "ncthw":
        model = ViewsRecognizer3D(sig.views, sig.num_seg, sig.num_classes)
    elif sig.name == "slowfast":
        model = TinySlowFast(sig.alpha, sig.num_classes)
    else:
        raise ValueError(f"unknown signature {sig.name!r} (known: {', '.join(SIGNATURES)})")
    model.eval()
    _seed_weights(model, seed)
    _spread_head(model, sig, seed)
    return model


def _seed_weights(model: nn.Layer, seed: int) -> None:
    """Every parameter and BatchNorm statistic from one numpy generator, in name order: the same on every machine.

    BatchNorm gets statistics away from (0, 1), so that folding it (Paddle's passes, ONNX Runtime's) is exercised.
    """
    rng = np.random.default_rng(seed)
    for name, tensor in sorted(model.state_dict().items()):
        shape = tuple(tensor.shape)
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("_mean"):
            value = rng.normal(0.0, 0.2, shape)
        elif name.endswith("bn.weight"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("bias"):
            value = rng.normal(0.0, 0.1, shape)
        else:  # conv and fc weights: He-like scale over the fan-in (fc weights are [in, out] in Paddle)
            fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
            value = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
        tensor.set_value(value.astype(np.float32))


def _spread_head(model: nn.Layer, sig: Signature, seed: int) -> None:
    """Scale and centre the fc so that, over a seeded random batch, every class's output has a mean of 0 and a spread
    (standard deviation across the batch) of ``LOGIT_SPREAD`` on average: different inputs win different classes."""
    feed = [paddle.to_tensor(a) for a in sig.feed(clips=16, seed=seed + 1).values()]
    with paddle.no_grad():
        out = (model.logits(*feed) if isinstance(model, TinySlowFast) else model(*feed)).numpy()
        scale = LOGIT_SPREAD / max(float(out.std(axis=0).mean()), 1e-6)
        model.fc.weight.set_value(model.fc.weight.numpy() * scale)
        model.fc.bias.set_value((model.fc.bias.numpy() - out.mean(axis=0)) * scale)


def export(signature: Signature | str, folder: str | Path, seed: int = 0) -> Path:
    """Export the tiny network of ``signature`` as PaddleVideo's export_model.py does (``paddle.jit.to_static`` with
    ``InputSpec``s whose batch dimension is None, then ``paddle.jit.save``) into ``folder``; returns the path prefix
    (``folder/NAME``: ``NAME.json`` or ``NAME.pdmodel`` with ``NAME.pdiparams``)."""
    sig = SIGNATURES[signature] if isinstance(signature, str) else signature
    model = build(sig, seed)
    try:
        static = paddle.jit.to_static(model, input_spec=sig.input_specs(), full_graph=True)
    except TypeError:  # Paddle 2.x has no full_graph: it always traces the whole graph
        static = paddle.jit.to_static(model, input_spec=sig.input_specs())
    prefix = Path(folder) / sig.name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(static, str(prefix))
    return prefix
