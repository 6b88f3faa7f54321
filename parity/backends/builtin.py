"""The built-in backends: registered like any plugin, through this project's ``pptsm_parity.backends`` entry point.

Chain positions are 10 apart (dygraph -> static -> optimized Paddle -> ONNX -> lower precision and other runtimes),
so a plugin can take a place between two of them.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import cached_fp16
from ..precision.int8 import cached_int8
from . import gpu
from .dygraph import DygraphRunner
from .onnxrt import ort_runner
from .openvino import OpenVinoRunner, precision_reason
from .paddle_inference import PaddleInferenceRunner, fast_cpu_mode
from .registry import Backend, ModelArtifacts
from .tensorrt import trt_runner


def _paddle_cpu(art: ModelArtifacts):
    return PaddleInferenceRunner(art.paddle_model, threads=art.threads, name="paddle", mode=fast_cpu_mode(art.paddle_model, art.cache))


def _dygraph(art: ModelArtifacts):
    return DygraphRunner(art.weights, art.dygraph, name="paddle-dygraph")


def _openvino(precision: str):
    def make(art: ModelArtifacts):
        return OpenVinoRunner(art.onnx, precision, art.threads, name="openvino" if precision == "fp32" else f"openvino-{precision}")

    return make


def _openvino_probe(precision: str):
    def probe():
        return precision_reason(precision)

    return probe


def _paddle_mode(mode: str, name: str):
    def make(art: ModelArtifacts):
        return PaddleInferenceRunner(art.paddle_model, threads=art.threads, name=name, mode=mode)

    return make


def _ort_cpu(art: ModelArtifacts):
    return ort_runner(art.onnx, "onnxruntime", art.threads)


def _ort_cpu_fp16(art: ModelArtifacts):
    return ort_runner(lambda: str(cached_fp16(art.onnx, art.cache)), "onnxruntime-fp16", art.threads)


def _int8_model(art: ModelArtifacts) -> Path:
    """onnxruntime-int8's QDQ model, calibrated on --calibration (cached by content)."""
    return cached_int8(art.onnx, art.calibration, art.pre, art.cache)[0]


def _ort_cpu_int8(art: ModelArtifacts):
    return ort_runner(lambda: str(art.calibrated.get("onnxruntime-int8") or _int8_model(art)), "onnxruntime-int8", art.threads)


def _ort_gpu(art: ModelArtifacts, trt_fp16: bool | None, name: str):
    return gpu.ort_gpu_runner(art, trt_fp16, name)


def _paddle_gpu(art: ModelArtifacts, trt_precision: str | None, name: str):
    return gpu.paddle_gpu_runner(art, trt_precision, name)


def _trt(precision: str):
    def make(art: ModelArtifacts):
        return trt_runner(art, precision, f"tensorrt-{precision}")

    return make


def _probe(kind: str, *args):
    def probe():
        return getattr(gpu, kind)(*args)

    return probe


BUILTIN: tuple[Backend, ...] = (
    Backend(
        "paddle-dygraph", "fp32", "the training checkpoint through the model code (Paddle dygraph, eval mode)",
        ("paddle",), "weights", _dygraph, chain=0,
    ),
    Backend(
        "paddle", "fp32", "Paddle Inference, CPU, oneDNN on, IR optimization off (the conv+activation fusion left out where it crashes the model)",
        ("paddle",), "paddle", _paddle_cpu, chain=20, localizable=True,
    ),
    Backend("paddle-native", "fp32", "Paddle Inference, CPU, oneDNN and IR optimization off (the program as exported; slow)",
            ("paddle",), "paddle", _paddle_mode("native", "paddle-native"), chain=10, localizable=True),
    Backend(
        "paddle-onednn", "fp32", "Paddle Inference, CPU, IR optimization and oneDNN on (Paddle's deployed default)",
        ("paddle",), "paddle", _paddle_mode("onednn-ir", "paddle-onednn"), isolate=True, chain=30,
    ),
    Backend("onnxruntime", "fp32", "ONNX Runtime, CPU execution provider", ("onnxruntime",), "onnx", _ort_cpu, chain=60, localizable=True),
    Backend(
        "onnxruntime-fp16",
        "fp16",
        "ONNX Runtime, CPU, model converted to float16 (float32 I/O)",
        ("onnxruntime", "onnxconverter_common"),
        "onnx",
        _ort_cpu_fp16,
        chain=110, localizable=True, advisable=True,
    ),
    Backend(
        "onnxruntime-int8", "int8", "ONNX Runtime, CPU, static INT8 (QDQ, per-channel weights) calibrated on --calibration",
        ("onnxruntime",), "onnx", _ort_cpu_int8, chain=160, advisable=True, needs_calibration=True, calibrate=_int8_model,
    ),
    Backend("openvino", "fp32", "OpenVINO, CPU device, the ONNX model at f32", ("openvino",), "onnx", _openvino("fp32"), chain=70),
    Backend("openvino-fp16", "fp16", "OpenVINO, CPU device, the ONNX model at f16 inference precision", ("openvino",), "onnx",
            _openvino("fp16"), probe=_openvino_probe("fp16"), chain=120),
    Backend("openvino-bf16", "fp16", "OpenVINO, CPU device, the ONNX model at bf16 inference precision", ("openvino",), "onnx",
            _openvino("bf16"), probe=_openvino_probe("bf16"), chain=130),
    Backend(
        "onnxruntime-cuda", "fp32", "ONNX Runtime, CUDA execution provider (TF32 off)", ("onnxruntime",), "onnx",
        lambda a: _ort_gpu(a, None, "onnxruntime-cuda"), "gpu", _probe("ort_provider_reason", "CUDAExecutionProvider"), chain=80,
    ),
    Backend(
        "onnxruntime-trt-fp16", "fp16", "ONNX Runtime, TensorRT execution provider, FP16", ("onnxruntime",), "onnx",
        lambda a: _ort_gpu(a, True, "onnxruntime-trt-fp16"), "gpu", _probe("ort_provider_reason", "TensorrtExecutionProvider"), chain=140,
    ),
    Backend(
        "tensorrt-fp32", "fp32", "TensorRT through Polygraphy, FP32 (TF32 off)", ("tensorrt",), "onnx",
        _trt("fp32"), "gpu", _probe("cuda_device_reason"), chain=90,
    ),
    Backend(
        "tensorrt-fp16", "fp16", "TensorRT through Polygraphy, FP16", ("tensorrt",), "onnx",
        _trt("fp16"), "gpu", _probe("cuda_device_reason"), chain=150,
    ),
    Backend(
        "tensorrt-int8", "int8", "TensorRT through Polygraphy, INT8 (calibrated on --calibration; QDQ on TensorRT 11)", ("tensorrt",),
        "onnx", _trt("int8"), "gpu", _probe("cuda_device_reason"), chain=170, needs_calibration=True,
    ),
    Backend(
        "paddle-gpu", "fp32", "Paddle Inference, GPU", ("paddle",), "paddle",
        lambda a: _paddle_gpu(a, None, "paddle-gpu"), "gpu", _probe("paddle_gpu_reason", False), chain=40, tf32_off=True,
    ),
    Backend(
        "paddle-trt-fp32", "fp32", "Paddle Inference, TensorRT subgraph engine, FP32", ("paddle",), "paddle",
        lambda a: _paddle_gpu(a, "fp32", "paddle-trt-fp32"), "gpu", _probe("paddle_gpu_reason", True), chain=50, tf32_off=True,
        needs_legacy_program=True,
    ),
    Backend(
        "paddle-trt-fp16", "fp16", "Paddle Inference, TensorRT subgraph engine, FP16", ("paddle",), "paddle",
        lambda a: _paddle_gpu(a, "fp16", "paddle-trt-fp16"), "gpu", _probe("paddle_gpu_reason", True), chain=100,
        needs_legacy_program=True,
    ),
)
