"""ONNX Runtime sessions, built one way: quiet, on the CPU unless told otherwise, with the options a caller names."""
from __future__ import annotations

from pathlib import Path

from ..optional import lazy

ort = lazy("onnxruntime")

QUIET = 3  # errors only: ORT's warnings (unused initializers, fallbacks it then reports itself) are not the user's business
# ORT's intra-op threads spin after their work by default, waiting for the next op: on a machine whose cores the next
# backend or a decode needs, that spinning is stolen time (issue #24). A caller's own ``config`` entry wins.
NO_SPIN = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def session(model, providers: list | None = None, threads: int | None = None, provider_options: list | None = None,
            config: dict[str, str] | None = None, profile_prefix: str | None = None, strict: bool = False):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, serialized bytes or a ModelProto).

    ``threads`` sets the intra-op thread count, ``config`` session config entries (over ``NO_SPIN``), ``profile_prefix``
    turns profiling on. ``strict``: ORT quietly falls back to the CPU when a requested provider cannot
    start, which for a GPU backend would compare the CPU with itself, so that is raised instead.
    """
    providers = providers or ["CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.log_severity_level = QUIET
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if threads:
        opts.intra_op_num_threads = threads
    for key, value in {**NO_SPIN, **(config or {})}.items():
        opts.add_session_config_entry(key, value)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    sess = ort.InferenceSession(model, opts, providers=providers, provider_options=provider_options)
    if strict and sess.get_providers()[0] != providers[0]:
        raise RuntimeError(f"ONNX Runtime could not start {providers[0]} and fell back to {sess.get_providers()[0]}")
    return sess


def ort_load_error(onnx_path: str | Path) -> str | None:
    """The one-line reason ONNX Runtime refuses a model, or None when a session opens."""
    try:
        session(onnx_path)
    except Exception as exc:  # ORT raises several exception types for invalid graphs
        return " ".join(str(exc).split())
    return None
