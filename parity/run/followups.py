"""What follows a verdict and explains it, for a run and a merge alike: the lint of the models before, and after
judging the repro bundle's worst clips, ``--localize``, ``--advise`` and the INT8 record.

Everything here is picked from the judged comparisons (``compare.worst_clips`` and ``compare.badness``), never
from which shard or which order clips came in, so two merged shards explain a failure as one run does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..artifacts import cached_fp16
from ..backends import BACKENDS, ModelArtifacts, Status
from ..compare import badness, worst_clips
from ..config import RunConfig
from ..diagnose.lint import Finding, lint, tensor_owners
from ..diagnose.localize import localize
from ..diagnose.program import read_program
from ..errors import HarnessError
from ..optional import lazy
from ..precision.advise import advise
from ..precision.int8 import cached_int8, calibration_tensors
from .collect import REPRO_CLIPS

onnx = lazy("onnx")

INT8_BACKEND = "onnxruntime-int8"  # the backend whose INT8 model (cached_int8) the record describes


@dataclass
class Followups:
    diagnosis: list[dict] = field(default_factory=list)
    int8: dict | None = None
    advice: list[dict] = field(default_factory=list)
    repro_inputs: list[tuple] = field(default_factory=list)  # (path, label, tensor), worst first
    notes: list[str] = field(default_factory=list)


def lint_models(cfg: RunConfig, art: ModelArtifacts) -> list[dict] | None:
    """The lint of the ONNX model against the Paddle program, when both are given and --lint is not off."""
    if cfg.lint == "off" or art.paddle_model is None or art.onnx is None:
        return None
    try:
        return [f.to_dict() for f in lint(art.paddle_model, art.onnx)]
    except HarnessError as exc:  # the run goes on and reports on its own; the lint could not vouch for the model
        return [Finding("lint-cannot-read-program", "", "", "", "", None, None, str(exc)).to_dict()]


def worst_paths(comparisons, clip_records, k: int = REPRO_CLIPS) -> list[str]:
    """The ``k`` clips that break anywhere, worst first by ``compare.badness`` over every judged comparison."""
    index = {c.path: c.index for c in clip_records}
    over: dict[str, float] = {}
    for comp in comparisons:
        atol = max(comp.tolerance["atol"], 1e-12)
        for clip in comp.clips:
            if clip.problems:
                err = clip.max_abs / atol if np.isfinite(clip.max_abs) else float("inf")
                over[clip.path] = max(over.get(clip.path, 0.0), err)
    return sorted(over, key=lambda p: badness(True, over[p], index[p]), reverse=True)[:k]


def followups(cfg: RunConfig, art: ModelArtifacts, comparisons, records, clip_records,
              tensor_of: Callable[[str], np.ndarray]) -> Followups:
    """The repro clips, then with ``--localize`` and ``--advise`` their follow-ups, and the INT8 record.

    ``tensor_of(path)`` gives a clip's input tensor: the run's kept one, else decoded again (the same bits)."""
    labels = {c.path: c.label for c in clip_records}
    out = Followups(repro_inputs=[(p, labels[p], tensor_of(p)) for p in worst_paths(comparisons, clip_records)])
    if cfg.localize:
        out.diagnosis = [_localize(art, comp, tensor_of) for comp in comparisons if not comp.passed]
    out.int8 = _int8_record(art, records, clip_records, out.notes)
    if cfg.advise:
        out.advice = _advise(cfg, art, comparisons, [t for *_, t in out.repro_inputs])
    return out


def helper_followups(cfg: RunConfig, helper: str, comparisons) -> Followups:
    """Another helper's run: the repro bundle, --localize and --advise work on PP-TSM's one [1, T, 3, S, S] input (the
    repro reruns it with --inputs), so they are not made; said once when they were asked for or something failed."""
    wanted = [what for what, asked in (("--localize", cfg.localize), ("--advise", cfg.advise),
                                       ("the repro bundle", any(not c.passed for c in comparisons))) if asked]
    notes = [f"{', '.join(wanted)}: not made for {helper} (they take PP-TSM's one input)"] if wanted else []
    return Followups(notes=notes)


def _localizable(name: str, needs: str) -> bool:
    """A backend whose intermediates can be exposed, on one side of a localization: "onnx" (ONNX Runtime) or "paddle" (the program)."""
    return name in BACKENDS and BACKENDS[name].localizable and BACKENDS[name].needs == needs


def _localize(art: ModelArtifacts, comp, tensor_of) -> dict:
    """Where a failing ONNX Runtime pair diverged from the Paddle program, on its worst clip; other pairs say why not."""
    backend = comp.base_backend
    if not _localizable(backend, "onnx") or not _localizable(comp.reference, "paddle") or art.paddle_model is None:
        return {"backend": comp.backend, "against": comp.reference, "note": "localization needs an ONNX Runtime backend "
                "compared with the Paddle program (paddle or paddle-native)", "first_divergence": None, "curve": []}
    (worst,) = worst_clips(comp, 1)
    precision = BACKENDS[backend].precision
    onnx_model = cached_fp16(art.onnx, art.cache) if precision == "fp16" else art.onnx
    return localize(art.paddle_model, onnx_model, tensor_of(worst.path), comp.backend, comp.reference, worst.path, precision).to_dict()


def _advise(cfg: RunConfig, art: ModelArtifacts, comparisons, tensors: list[np.ndarray]) -> list[dict]:
    """For each failing FP16/INT8 ONNX Runtime pair: the nodes to keep in FP32, verified on the run's worst clips."""
    out = []
    for comp in comparisons:
        if comp.passed or comp.backend not in BACKENDS or not BACKENDS[comp.backend].advisable or not tensors:
            continue
        precision = BACKENDS[comp.backend].precision
        calibration = calibration_tensors(art.calibration, art.pre)[0] if precision == "int8" else None
        out.append({"backend": comp.backend, **advise(art.onnx, tensors, precision, cfg.tolerances, calibration, art.paddle_model).to_dict()})
    return out


def _int8_record(art: ModelArtifacts, records, clip_records, notes: list[str]) -> dict | None:
    """How the INT8 model was made, its per-layer SQNR (worst first, in Paddle's names), and any calibration overlap."""
    if not any(r.name == INT8_BACKEND and r.status == Status.OK for r in records):
        return None
    _, record = cached_int8(art.onnx, art.calibration, art.pre, art.cache)
    owners = tensor_owners(read_program(art.paddle_model), onnx.load(str(art.onnx))) if art.paddle_model else {}
    labels = {name: op.label for name, op in owners.items()}
    overlap = len(set(record.pop("calibration_sha256")) & {c.sha256 for c in clip_records if c.sha256})
    if overlap:
        notes.append(f"calibration set overlaps the evaluated clips: {overlap} clip(s) are in both; the INT8 numbers are optimistic")
    record["calibration_overlap"] = overlap
    record["sqnr"] = [{**row, "paddle_op": labels.get(row["tensor"], "")} for row in record["sqnr"][:20]]
    return record
