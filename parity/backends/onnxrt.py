"""ONNX Runtime backends, through Polygraphy's OnnxrtRunner."""
from __future__ import annotations


def session_loader(model, providers: list, threads: int | None = None, provider_options: list | None = None, require_trt: bool = False):
    """A lazy loader of an ``onnxruntime.InferenceSession`` (``model``: path, bytes or callable).

    Polygraphy's SessionFromOnnx takes no session or provider options, which the GPU
    backends need (TF32 off, TensorRT FP16), so this loader builds the session itself.
    """

    def load():
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        if require_trt:  # a node TensorRT does not take must not run quietly on the CPU either
            opts.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        src = model() if callable(model) else model
        sess = ort.InferenceSession(str(src) if not isinstance(src, bytes) else src, opts, providers=providers, provider_options=provider_options)
        # ORT quietly falls back to the CPU when a requested provider cannot start: for a GPU
        # backend that would compare the CPU with itself, so it is this backend's error.
        if sess.get_providers()[0] != providers[0]:
            raise RuntimeError(f"ONNX Runtime could not start {providers[0]} and fell back to {sess.get_providers()[0]}")
        return sess

    return load


def ort_runner(model, name: str, threads: int | None = None, providers: list | None = None, provider_options: list | None = None,
               require_trt: bool = False):
    """Polygraphy's OnnxrtRunner over ``session_loader`` (CPU unless ``providers`` says otherwise)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    return OnnxrtRunner(session_loader(model, providers or ["CPUExecutionProvider"], threads, provider_options, require_trt), name=name)
