"""OpenVINO backends: the ONNX model on OpenVINO's CPU device, at f32, and at f16/bf16 where the CPU runs them.

OpenVINO's own Paddle frontend cannot serve PP-TSM (2026.4: "No creator found for temporal_shift
node" on a Paddle 2.6 ``.pdmodel``, and it cannot read Paddle 3's PIR ``.json``), so these read the
ONNX model the rest of the chain uses.
"""
from __future__ import annotations

import functools
import time
from collections import OrderedDict

import numpy as np
from polygraphy.backend.base import BaseRunner

from ..optional import lazy, missing

ov = lazy("openvino")
ops = lazy("openvino.opset13")

PRECISIONS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


@functools.lru_cache(maxsize=None)
def precision_reason(precision: str) -> str | None:
    """None when this CPU runs ``precision`` natively; else why not.

    OpenVINO quietly falls back to f32 where a hint is not supported, which would compare f32
    with itself under an f16 name: so a tiny model is compiled with the hint and the precision
    the compiled model reports is checked.
    """
    if reason := missing("openvino"):
        return f"unavailable: {reason}"
    x = ops.parameter([1, 4], np.float32)
    model = ov.Model([ops.relu(ops.multiply(x, ops.constant(np.ones((1, 4), np.float32))))], [x])
    try:
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": PRECISIONS[precision]})
        got = compiled.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError as exc:
        return f"unavailable: OpenVINO's CPU device refuses {precision}: {str(exc).splitlines()[0][:200]}"
    if got != {"f32": ov.Type.f32, "f16": ov.Type.f16, "bf16": ov.Type.bf16}[PRECISIONS[precision]]:
        return f"unavailable: this CPU does not run {precision} in OpenVINO (it would fall back to {got.get_type_name()})"
    return None


class OpenVinoRunner(BaseRunner):
    """Compiles the ONNX model for OpenVINO's CPU device with an inference precision hint."""

    def __init__(self, onnx_path, precision: str = "fp32", threads: int | None = None, name: str | None = None):
        super().__init__(name=name, prefix="openvino-runner")
        self.onnx_path, self.precision, self.threads = str(onnx_path), precision, threads

    def activate_impl(self):
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[self.precision]}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.compiled = ov.Core().compile_model(self.onnx_path, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def get_input_metadata_impl(self):
        raise NotImplementedError("OpenVINO runners take feed dicts without input checks")

    def infer_impl(self, feed_dict):
        # one input by position (PP-TSM's); several by the model's input names
        feed = {0: next(iter(feed_dict.values()))} if len(feed_dict) == 1 else dict(feed_dict)
        start = time.perf_counter()
        result = self.request.infer(feed)
        self.inference_time = time.perf_counter() - start
        return OrderedDict(logits=next(iter(result.values())).copy())

    def deactivate_impl(self):
        del self.request, self.compiled
