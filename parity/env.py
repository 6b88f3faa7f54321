"""The environment record of a run: machine, Python, and the versions of every library in the chain."""
from __future__ import annotations

import importlib.metadata
import platform

from .backends import BACKENDS
from .backends.gpu import gpu_names
from .machine import cpu_count, cpu_features, cpu_name
from .optional import lazy, missing

paddle = lazy("paddle")

# The distributions whose versions decide the numbers: the runtimes, the converter, the decoders.
DISTRIBUTIONS = (
    "paddlepaddle", "paddlepaddle-gpu", "paddle2onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxconverter-common",
    "polygraphy", "tensorrt", "numpy", "decord", "av", "pillow", "opencv-python-headless", "ray",
)


def environment() -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_name(),
           "cpu_features": " ".join(cpu_features()) or "unknown", "cpu_count": cpu_count()}
    gpus = gpu_names()
    env["gpu"] = ", ".join(gpus) if gpus else "none"
    tf32_off = ", ".join(n for n, b in BACKENDS.items() if b.tf32_off)
    env["tf32"] = f"off in {tf32_off} (NVIDIA_TF32_OVERRIDE=0 set in their own processes); ORT CUDA use_tf32=0; TensorRT FP32 without TF32"
    for dist in DISTRIBUTIONS:
        try:
            env[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if not missing("paddle"):
        env["paddle_cuda"] = paddle.version.cuda() if paddle.is_compiled_with_cuda() else "CPU build"
    return env
