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
from .models import pptsm_v2
from .optional import lazy

paddle = lazy("paddle")

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
    model_state = model.state_dict()
    state = normalize_keys(state, set(model_state))
    rep_blocks = {name: layer for name, layer in model.named_sublayers() if isinstance(layer, pptsm_v2.DepthwiseSeparable) and layer.use_rep}
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


def read_checkpoint(path: str | Path) -> dict:
    """The state dict of a ``.pdparams``; a missing or unreadable file is one CheckpointError line."""
    load = paddle.load  # imports paddle: without it, an ImportError, not an unreadable checkpoint
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = load(str(path))
    except Exception as exc:  # paddle.load raises many types on a bad file
        raise CheckpointError(f"{path}: not a readable .pdparams: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def load_checkpoint(model, path: str | Path) -> None:
    load_state(model, read_checkpoint(path), str(Path(path)))


def bare_keys(state: dict) -> dict:
    """``state`` under the model's own parameter names: without the DML teacher, the student prefixes and
    Recognizer2D's ``backbone.``/``head.``."""
    out = {}
    for key, value in state.items():
        if key.startswith("Teacher."):
            continue
        for prefix in (*_STUDENT_PREFIXES, "backbone.", "head."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                if prefix in _STUDENT_PREFIXES and key.startswith(("backbone.", "head.")):
                    key = key.split(".", 1)[1]
                break
        out[key] = value
    return out


def spec_from_checkpoint(weights_path: str | Path) -> dict:
    """The model settings a PaddleVideo checkpoint was trained with, read from its parameters (any prefix form,
    training or repped): ``arch``; ``temporal_attention`` (the ``global_attention`` keys); ``num_classes`` (the
    classifier's shape); for PP-TSMv2 also ``scale`` (the channel widths), ``depths`` (blocks per stage) and
    ``class_expand`` (``last_conv``'s width), and ``num_seg`` when LTA's ``Linear(T, T)`` gives it.
    A checkpoint of neither model is one CheckpointError line."""
    path = Path(weights_path)
    state = bare_keys(read_checkpoint(path))
    shape = {k: [int(d) for d in np.shape(v)] for k, v in state.items()}  # np.shape reads a paddle Tensor's shape as it is
    if "stem.0.conv.weight" in shape and any(k.startswith("stages.") for k in shape):
        return _v2_spec(path, shape)
    if "conv1_1._conv.weight" in shape and any(k.startswith("bb_") for k in shape):
        fc = shape.get("fc.weight")
        spec = {"arch": "pptsm_r50", "temporal_attention": False}
        if fc and len(fc) == 2:
            spec["num_classes"] = fc[1]  # Paddle Linear is [in, out]
        return spec
    shown = ", ".join(sorted(state)[:5]) or "no parameters"
    raise CheckpointError(f"{path}: neither a PP-TSMv2 nor a PP-TSM (ResNet50) checkpoint (its keys begin: {shown})")


def _v2_spec(path: Path, shape: dict[str, list[int]]) -> dict:
    def need(key: str, axis: int) -> int:
        if key not in shape or len(shape[key]) <= axis:
            raise CheckpointError(f"{path}: a PP-TSMv2 checkpoint without {key}; cannot read the model's settings")
        return shape[key][axis]

    depths = []
    for s in range(len(pptsm_v2.NET_CONFIG)):
        blocks = {int(k.split(".")[2]) for k in shape if k.startswith(f"stages.{s}.") and k.split(".")[2].isdigit()}
        if not blocks:
            raise CheckpointError(f"{path}: a PP-TSMv2 checkpoint without stage {s + 1} (no stages.{s}.* keys)")
        depths.append(max(blocks) + 1)
    # the width of every stage's output, the stem's and the tail's input: one scale gives them all
    widths = {("stem.0.conv.weight", 0): 32, ("stem.1.pw_conv.conv.weight", 0): 64, ("last_conv.weight", 1): 1024}
    for s, (in_ch, _, split_pw, *_rest) in enumerate(pptsm_v2.NET_CONFIG.values()):
        widths[(f"stages.{s}.0.{'pw_conv_2' if split_pw else 'pw_conv'}.conv.weight", 0)] = in_ch * 2
    found = {key: need(*key) for key in widths}
    guess = found[("last_conv.weight", 1)] / 1024
    candidates = sorted({round(k * 0.05, 2) for k in range(1, 81)} | {round(k / 8, 3) for k in range(1, 33)}, key=lambda v: abs(v - guess))
    scale = next((c for c in [*candidates, guess] if all(pptsm_v2.make_divisible(base * c) == found[key] for key, base in widths.items())), None)
    if scale is None:
        raise CheckpointError(f"{path}: its channel widths ({', '.join(f'{k[0]} {v}' for k, v in found.items())}) fit no PP-TSMv2 scale")
    spec = {"arch": "pptsm_v2", "scale": scale, "depths": depths, "class_expand": need("last_conv.weight", 0),
            "num_classes": need("fc.weight", 1), "temporal_attention": "global_attention.fc.weight" in shape}
    if spec["temporal_attention"]:
        spec["num_seg"] = need("global_attention.fc.weight", 0)
    return spec
