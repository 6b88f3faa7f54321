"""ONNX Runtime backends, through Polygraphy's OnnxrtRunner."""
from __future__ import annotations

from polygraphy.backend.onnxrt import OnnxrtRunner

from ..artifacts.ort import session


def session_loader(model, providers: list, threads: int | None = None, provider_options: list | None = None, require_trt: bool = False):
    """A lazy loader of an ``onnxruntime.InferenceSession`` (``model``: path, bytes or callable).

    Polygraphy's SessionFromOnnx takes no session or provider options, which the GPU
    backends need (TF32 off, TensorRT FP16), so this loader builds the session itself.
    """

    def load():
        src = model() if callable(model) else model
        # a node TensorRT does not take must not run quietly on the CPU either
        config = {"session.disable_cpu_ep_fallback": "1"} if require_trt else None
        return session(src, providers, threads, provider_options, config, strict=True)

    return load


def ort_runner(model, name: str, threads: int | None = None, providers: list | None = None, provider_options: list | None = None,
               require_trt: bool = False):
    """Polygraphy's OnnxrtRunner over ``session_loader`` (CPU unless ``providers`` says otherwise)."""
    return OnnxrtRunner(session_loader(model, providers or ["CPUExecutionProvider"], threads, provider_options, require_trt), name=name)
