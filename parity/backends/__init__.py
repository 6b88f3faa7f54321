"""Backends: one Polygraphy runner per way of running the model, behind one registry.

A ``Backend`` says what it needs (``requires``), whether it can run here (``availability``)
and how to make its runner (``make_runner``). Optional packages are imported only inside
``make_runner``, so listing backends costs nothing and works on any machine.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..build import ArtifactCache, PaddleModel


@dataclass
class ModelArtifacts:
    """What a run compares: the Paddle model, the ONNX file, and where derived files are cached."""

    paddle_model: PaddleModel | None = None
    onnx: Path | None = None
    cache: ArtifactCache = field(default_factory=ArtifactCache)
    threads: int | None = None


@dataclass(frozen=True)
class Backend:
    name: str
    precision: str  # "fp32" | "fp16": selects the tolerance
    description: str
    requires: tuple[str, ...]  # importable modules
    needs: str  # which artifact it runs: "paddle" | "onnx"
    make_runner: Callable[[ModelArtifacts], object]

    def availability(self, artifacts: ModelArtifacts | None = None) -> str | None:
        """None when it can run here, else the one-line reason it cannot."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"unavailable: {module} not importable"
        if artifacts is not None:
            if self.needs == "paddle" and artifacts.paddle_model is None:
                return "unavailable: no Paddle model given (--paddle-model)"
            if self.needs == "onnx" and artifacts.onnx is None:
                return "unavailable: no ONNX model given (--onnx)"
        return None


def _paddle_cpu(art: ModelArtifacts):
    from .paddle_inference import PaddleInferenceRunner

    return PaddleInferenceRunner(art.paddle_model, threads=art.threads, name="paddle")


def _ort_cpu(art: ModelArtifacts):
    from .onnxrt import cpu_runner

    return cpu_runner(art.onnx, name="onnxruntime", threads=art.threads)


def _ort_cpu_fp16(art: ModelArtifacts):
    from ..build import cached_fp16
    from .onnxrt import cpu_runner

    return cpu_runner(lambda: str(cached_fp16(art.onnx, art.cache)), name="onnxruntime-fp16", threads=art.threads)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("paddle", "fp32", "Paddle Inference, CPU (IR optimization and oneDNN off)", ("paddle",), "paddle", _paddle_cpu),
        Backend("onnxruntime", "fp32", "ONNX Runtime, CPU execution provider", ("onnxruntime",), "onnx", _ort_cpu),
        Backend(
            "onnxruntime-fp16",
            "fp16",
            "ONNX Runtime, CPU, model converted to float16 (float32 I/O)",
            ("onnxruntime", "onnxconverter_common"),
            "onnx",
            _ort_cpu_fp16,
        ),
    )
}
DEFAULT_BACKENDS = ("paddle", "onnxruntime", "onnxruntime-fp16")


def resolve(names: str | list[str] | None) -> list[Backend]:
    """Backend names (comma list, or ``all`` for every one available here) to backends."""
    from ..errors import HarnessError

    if names is None:
        names = list(DEFAULT_BACKENDS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:
        return [b for b in BACKENDS.values() if b.availability() is None]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise HarnessError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    return [BACKENDS[n] for n in dict.fromkeys(names)]
