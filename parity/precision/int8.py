"""INT8: ONNX Runtime static quantization (QDQ) calibrated on real clips, and its per-layer SQNR.

Per-channel weights need opset >= 13 (at 11, ONNX Runtime refuses ``DequantizeLinear`` with an
``axis``; paddle2onnx converts at 11): the model is converted to 13 with ``onnx.version_converter``,
and when that fails quantization falls back to per-tensor at its own opset. Which one ran is
recorded. The quantized model is cached by the model's hash, the calibration set's and the method.

Two targets: ``onnxruntime`` (``quantize_static``'s defaults: asymmetric activations, what
``onnxruntime-int8`` runs) and ``tensorrt`` (what TensorRT's ONNX parser takes for ``tensorrt-int8`` on
TensorRT 11: symmetric activations and weights, so every zero-point is 0, per-channel weights, the
bias left in float), each under its own cache key.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactCache, sha256_file, sha256_json
from ..clips import load_clips
from ..errors import HarnessError
from ..inputs import clip_sha256, prepare_inputs
from ..optional import lazy

onnx = lazy("onnx")
onnxruntime = lazy("onnxruntime")
quantization = lazy("onnxruntime.quantization")
qdq_loss_debug = lazy("onnxruntime.quantization.qdq_loss_debug")

CALIBRATION_CLIPS = 64  # at most, from the calibration list, in order
SQNR_CLIPS = 2


def calibration_tensors(listing: str | Path, pre) -> tuple[list[np.ndarray], list[str]]:
    """The calibration clips' input tensors (the run's preprocessing) and their sha256."""
    items = [i for i in prepare_inputs(load_clips(listing)[:CALIBRATION_CLIPS], pre, desc="calibration") if i.ok]
    if not items:
        raise HarnessError(f"{listing}: no readable calibration clip")
    return [i.tensor for i in items], [i.sha256 for i in items]


def calibration_key(listing: str | Path, pre) -> str:
    """What identifies a calibration set without decoding it: its clips' content hashes and the preprocessing."""
    hashes = []
    for clip in load_clips(listing)[:CALIBRATION_CLIPS]:
        try:
            hashes.append(clip_sha256(clip.path))
        except OSError:  # an unreadable clip is left out of calibration too
            hashes.append(f"unreadable:{clip.path}")
    return sha256_json([hashes, pre.to_dict()])


class _Reader:
    def __init__(self, name: str, tensors: list[np.ndarray]):
        self.name, self.tensors = name, iter(tensors)

    def get_next(self):
        x = next(self.tensors, None)
        return None if x is None else {self.name: x}

    def rewind(self):  # some ORT versions call it between passes
        pass

    def __iter__(self):  # qdq_loss_debug iterates the reader
        while (feed := self.get_next()) is not None:
            yield feed


def _input_name(path: Path) -> str:
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)


# quantize_static's extra_options per target. TensorRT refuses a non-zero zero-point ("TensorRT only supports symmetric
# quantization") and wants a float bias, not an INT32 DequantizeLinear.
TARGETS = {
    "onnxruntime": {},
    "tensorrt": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
}


def constants_to_initializers(model) -> int:
    """Move ``Constant`` tensors (how paddle2onnx 2.x writes weights) into initializers, in place; returns how many.

    ``quantize_static`` takes only initializers for weights: a Conv weight from a Constant node is quantized as
    an activation (per-tensor, calibrated), not per channel. TensorRT wants its weights per channel."""
    moved = []
    for node in model.graph.node:
        value = next((a for a in node.attribute if a.name == "value" and a.t is not None), None) if node.op_type == "Constant" else None
        if value is not None and len(node.attribute) == 1:
            tensor = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(value.t), node.output[0])
            model.graph.initializer.append(tensor)
            moved.append(node)
    for node in moved:
        model.graph.node.remove(node)
    return len(moved)


def quantize(onnx_path: Path, tensors: list[np.ndarray], out: Path, nodes_to_exclude: list[str] | None = None, target: str = "onnxruntime") -> dict:
    """QDQ INT8 of ``onnx_path`` into ``out`` for ``target`` (``TARGETS``); returns how (per-channel at 13, or per-tensor at the model's opset)."""
    model = onnx.load(str(onnx_path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=11)
    name = _input_name(onnx_path)
    extra = TARGETS[target]
    record = {"format": "QDQ", "calibration_method": "MinMax", "source_opset": opset, "target": target, "extra_options": extra}
    if target == "tensorrt":
        record["constants_as_initializers"] = constants_to_initializers(model)
    try:
        converted = onnx.version_converter.convert_version(model, 13) if opset < 13 else model
        quantization.quantize_static(converted, str(out), _Reader(name, tensors), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                                     activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
                                     calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=nodes_to_exclude or [], extra_options=dict(extra))
        record.update(weights="per-channel", opset=13)
    except Exception as exc:  # the version converter or per-channel quantization refused this graph
        quantization.quantize_static(model, str(out), _Reader(name, tensors), quant_format=quantization.QuantFormat.QDQ, per_channel=False,
                                     activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
                                     calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=nodes_to_exclude or [], extra_options=dict(extra))
        record.update(weights="per-tensor", opset=opset, why_not_per_channel=" ".join(str(exc).split())[:300])
    return record


def cached_int8(onnx_path: Path, listing: str | Path, pre, cache: ArtifactCache, target: str = "onnxruntime") -> tuple[Path, dict]:
    """The INT8 model of ``onnx_path`` calibrated on ``listing`` for ``target``, built once per (model, calibration set, method).

    The calibration clips are decoded only when the model is built, not when it is found in the cache.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown INT8 target {target!r}; known: {', '.join(TARGETS)}")

    def build(folder: Path) -> None:
        tensors, hashes = calibration_tensors(listing, pre)
        record = quantize(Path(onnx_path), tensors, folder / "model.int8.onnx", target=target)
        record.update(calibration=str(Path(listing).resolve()), calibration_clips=len(hashes), calibration_sha256=hashes)
        record["sqnr"] = sqnr(Path(onnx_path), folder / "model.int8.onnx", tensors[:SQNR_CLIPS])
        (folder / "int8.json").write_text(json.dumps(record, indent=2))

    key = {"onnx": sha256_file(onnx_path), "calibration": calibration_key(listing, pre), "method": "qdq-minmax-int8"}
    if target != "onnxruntime":  # the onnxruntime model keeps the key it always had
        key.update(target=target, extra_options=TARGETS[target])
    folder = cache.get_or_build("int8-onnx", key, build, code=("parity.precision.int8",))
    return folder / "model.int8.onnx", json.loads((folder / "int8.json").read_text())


def sqnr(float_path: Path, qdq_path: Path, tensors: list[np.ndarray]) -> list[dict]:
    """Per-tensor SQNR (dB) of the quantized model's activations against the float model's, worst first.

    ONNX Runtime's ``qdq_loss_debug``: both models get their intermediate tensors as outputs, run on
    the same clips, and each quantized activation is matched with its float one.
    """
    onnxruntime.set_default_logger_severity(3)  # its sessions' notes about unused initializers are not the user's business
    name = _input_name(float_path)
    with tempfile.TemporaryDirectory() as tmp:
        f_aug, q_aug = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(float_path), str(f_aug))
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(qdq_path), str(q_aug))
        float_acts = qdq_loss_debug.collect_activations(str(f_aug), _Reader(name, tensors))
        qdq_acts = qdq_loss_debug.collect_activations(str(q_aug), _Reader(name, tensors))
    errors = qdq_loss_debug.compute_activation_error(qdq_loss_debug.create_activation_matching(qdq_acts, float_acts))
    rows = []
    for tensor, err in errors.items():
        value = err.get("xmodel_err")
        if value is not None and math.isfinite(float(value)):
            rows.append({"tensor": tensor, "sqnr_db": float(value)})
    return sorted(rows, key=lambda r: r["sqnr_db"])
