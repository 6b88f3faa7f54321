"""Loading PaddleVideo checkpoints into our models by parameter name.

Accepted key forms: bare backbone keys, Recognizer2D's ``backbone.``/``head.`` prefixes,
distillation (DML) ``Student.0.`` prefixes (``Teacher.*`` is ignored), and the ``0.`` prefix
that PaddleVideo's student extraction leaves. Rep blocks load in training form (the
``dw_conv_list`` branches) or already repped (only ``dw_conv.weight``/``dw_conv.bias``).
Anything missing, unexpected or mis-shaped is one error that lists the keys.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import HarnessError

_STUDENT_PREFIXES = ("Student.0.", "student.0.", "0.")


class CheckpointError(HarnessError):
    pass


def normalize_keys(state: dict, model_keys: set[str]) -> dict:
    """Map a checkpoint's keys onto ``model_keys`` (which are ``backbone.*``/``head.*``)."""
    if any(k.startswith(("Student.", "Teacher.")) for k in state):
        state = {k: v for k, v in state.items() if not k.startswith("Teacher.")}
    out = {}
    for key, value in state.items():
        for prefix in _STUDENT_PREFIXES:
            if key.startswith(prefix) and not key.startswith(("backbone.", "head.")):
                key = key[len(prefix):]
                break
        if key not in model_keys and f"backbone.{key}" in model_keys:
            key = f"backbone.{key}"
        elif key not in model_keys and f"head.{key}" in model_keys:
            key = f"head.{key}"
        out[key] = value
    return out


def _to_numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def load_state(model, state: dict, source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` (a Recognizer2D) strictly; repped checkpoints rep the model."""
    from .models.pptsm_v2 import DepthwiseSeparable

    model_state = model.state_dict()
    state = normalize_keys(state, set(model_state))
    rep_blocks = {name: layer for name, layer in model.named_sublayers() if isinstance(layer, DepthwiseSeparable) and layer.use_rep}
    repped = rep_blocks and not any(".dw_conv_list." in k for k in state) and any(f"{n}.dw_conv.weight" in state for n in rep_blocks)
    expected = dict(model_state)
    if repped:
        expected = {k: v for k, v in expected.items() if ".dw_conv_list." not in k}
    elif rep_blocks:
        # training-form checkpoints may or may not carry the (unused) fused dw_conv tensors
        optional = {f"{n}.dw_conv.{p}" for n in rep_blocks for p in ("weight", "bias")}
        expected = {k: v for k, v in expected.items() if k not in optional or k in state}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    shapes = {k: list(np.shape(_to_numpy(state[k]))) for k in set(expected) & set(state)}
    misshaped = sorted(f"{k} {shape} != {list(expected[k].shape)}" for k, shape in shapes.items() if shape != list(expected[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(f"{source}: does not fit the model; " + "; ".join(problems))
    if repped:
        for layer in rep_blocks.values():
            layer.is_repped = True
    model.set_state_dict({k: _to_numpy(v) for k, v in state.items() if k in expected})


def load_checkpoint(model, path: str | Path) -> None:
    import paddle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = paddle.load(str(path))
    except Exception as exc:  # paddle.load raises many types on a bad file
        raise CheckpointError(f"{path}: not a readable .pdparams: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    load_state(model, state, str(path))
