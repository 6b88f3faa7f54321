"""``parity tolerances``: tolerances measured from data instead of hand-picked constants.

On a clean conversion, the noise floor of each precision is measured: FP32 run to run (the
reference twice), FP32 across runtimes (ONNX Runtime and OpenVINO against Paddle), FP16, and INT8
against FP32 when calibration clips are given. The proposal is a stated multiple of that floor
(``--factor``, default 10), written as a config file the gate reads.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import pvconfig
from .. import run as parity_run
from ..artifacts import ArtifactCache, PaddleModel
from ..config import RunConfig, dump_config

BACKENDS = {"fp32": ["onnxruntime", "openvino"], "fp16": ["onnxruntime-fp16"], "int8": ["onnxruntime-int8"]}


@dataclass
class Proposal:
    floors: dict  # precision -> {max_abs, max_rel, cosine_min, top1_agreement, backends}
    tolerances: dict  # precision -> Tolerance
    config_text: str
    lines: list[str] = field(default_factory=list)


def _floor(ref: np.ndarray, outs: list[np.ndarray]) -> dict:
    big = np.abs(ref) >= 1.0  # relative error only where it means something
    max_abs = max(float(np.max(np.abs(o - ref))) for o in outs)
    max_rel = max(float(np.max(np.abs(o - ref)[big] / np.abs(ref)[big])) if big.any() else 0.0 for o in outs)
    cos = min(float(np.min(np.einsum("ij,ij->i", ref, o) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(o, axis=1), 1e-30)))
              for o in outs)
    agree = min(float(np.mean(np.argmax(o, 1) == np.argmax(ref, 1))) for o in outs)
    return {"max_abs": max_abs, "max_rel": max_rel, "cosine_min": cos, "top1_agreement": agree}


def measure(paddle_model: PaddleModel, onnx: Path, clips: str, cache: ArtifactCache, factor: float = 10.0,
            calibration: str | None = None, pv: pvconfig.Applied | None = None) -> Proposal:
    """Both runs read --pv-config through ``pv`` (the command's applied config, read once)."""
    with tempfile.TemporaryDirectory() as tmp:
        wanted = ["paddle", *BACKENDS["fp32"], *BACKENDS["fp16"], *(BACKENDS["int8"] if calibration else [])]
        cfg = RunConfig(paddle_model=str(paddle_model.model_file), onnx=str(onnx), clips=clips, backends=wanted, report=tmp,
                        calibration=calibration, tensor_cache=str(Path(tmp) / "tensors"),
                        pv_config=str(pv.config.path) if pv is not None else None)
        first = parity_run.run(cfg, cache=cache, pv=pv)
        again = parity_run.run(dataclasses.replace(cfg, backends=["paddle"]), cache=cache, pv=pv)
    ref = first.logits["paddle"]
    floors = {"run-to-run": _floor(ref, [again.logits["paddle"]])}
    for precision, names in BACKENDS.items():
        ran = [n for n in names if n in first.logits]
        if ran:
            floors[precision] = {**_floor(ref, [first.logits[n] for n in ran]), "backends": ran}
    tolerances, lines = {}, []
    defaults = RunConfig().tolerances
    for precision in ("fp32", "fp16", "int8"):
        floor = floors.get(precision)
        if floor is None:
            continue
        base = defaults[precision]
        tolerances[precision] = dataclasses.replace(
            base,
            atol=float(max(factor * floor["max_abs"], 1e-7)),
            rtol=float(min(max(factor * floor["max_rel"], 1e-7), 1.0)),
            min_cosine=float(min(max(1.0 - factor * (1.0 - floor["cosine_min"]), 0.0), 1.0)),
            min_top1_agreement=float(min(floor["top1_agreement"], base.min_top1_agreement)),
        ) if precision != "int8" else base  # INT8 is judged on classes: its logit floor only informs
        lines.append(f"{precision}: floor max abs {floor['max_abs']:.3g}, max rel {floor['max_rel']:.3g}, cosine min "
                     f"{floor['cosine_min']:.7f}, top-1 agreement {floor['top1_agreement']:.3f} ({', '.join(floor['backends'])})"
                     + (f" -> atol {tolerances[precision].atol:.3g}, rtol {tolerances[precision].rtol:.3g}" if precision != "int8"
                        else f" -> {class_only(tolerances[precision])}"))
    warnings = looser_than_default(tolerances, defaults, factor)
    lines += warnings.values()
    if "int8" not in tolerances and "int8" in defaults:
        lines.append(f"int8 not measured (no --calibration); the default written is {class_only(defaults['int8'])}")
    rr = floors["run-to-run"]
    lines.insert(0, f"run to run ({first.reference} twice): max abs {rr['max_abs']:.3g}")
    for comp in first.comparisons:
        lines.append(f"  {comp.backend}: atol needed (with rtol {comp.tolerance['rtol']:g}) {comp.min_passing_atol:.3g}")
    proposed = dataclasses.replace(cfg, tolerances={**defaults, **tolerances}, report="reports/latest", tensor_cache=None,
                                   backends=[n for n in wanted if n in first.logits])
    header = (f"# Tolerances measured by `parity tolerances` ({factor:g} x the noise floor of a clean conversion):\n"
              + "".join(f"#   {line}\n" for line in lines))
    notes = dict(warnings)
    if "int8" in proposed.tolerances:  # never a bare `atol = 1000000.0`
        notes["int8"] = f"int8: {class_only(proposed.tolerances['int8'])}"
    text = annotate(dump_config(proposed), notes)
    return Proposal(floors, {k: v.to_dict() for k, v in tolerances.items()}, header + text, lines)


# What makes a tolerance looser: a larger atol or rtol, a smaller minimum cosine or top-1 agreement, a larger accuracy drop.
_LOOSER = {"atol": 1, "rtol": 1, "min_cosine": -1, "min_top1_agreement": -1, "max_accuracy_drop": 1}
CLASS_ONLY_ATOL = 1e5  # an atol this large never fails a logit: the precision is judged on its classes


def looser_than_default(measured: dict, defaults: dict, factor: float) -> dict[str, str]:
    """Per measured precision (INT8 aside: it keeps its class-only defaults) whose tolerance is looser than the
    shipped default in any field, the line that says so, with each such field's value and default."""
    out = {}
    for precision, tol in measured.items():
        base = defaults.get(precision)
        if base is None or precision == "int8":
            continue
        looser = [f"{k} {getattr(tol, k):.3g} (default {getattr(base, k):.3g})" for k, sign in _LOOSER.items()
                  if sign * (getattr(tol, k) - getattr(base, k)) > 0]
        if looser:
            out[precision] = (f"{precision}: the measured tolerance is LOOSER than the default: {', '.join(looser)}; "
                              f"{factor:g} x this conversion's noise floor is above what the gate ships with: check the "
                              "conversion before adopting it, or keep the default")
    return out


def class_only(tol) -> str:
    """What an INT8 tolerance judges: said, not left as ``atol = 1000000.0``."""
    if tol.atol < CLASS_ONLY_ATOL:
        return f"logits within atol {tol.atol:g}, rtol {tol.rtol:g}"
    return (f"judged on classes only (top-1 agreement >= {tol.min_top1_agreement:g}, accuracy drop <= {tol.max_accuracy_drop:g}, "
            f"no confident flip); atol and rtol {tol.atol:g} switch the per-logit check off on purpose")


def annotate(config_text: str, notes: dict[str, str]) -> str:
    """``config_text`` with each note as a comment above its ``[tolerance.<precision>]`` table."""
    out = []
    for line in config_text.splitlines():
        precision = line[len("[tolerance."):-1] if line.startswith("[tolerance.") and line.endswith("]") else None
        if precision in notes:
            out.append(f"# {notes[precision]}")
        out.append(line)
    return "\n".join(out) + "\n"
