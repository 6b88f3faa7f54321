"""The one place a ``RunResult`` is built, for ``parity run`` and ``parity merge`` alike.

A new section of the result is added here (and to ``RunResult``), never twice: a merged result cannot drop
what an unsharded one carries.
"""
from __future__ import annotations

import numpy as np

from ..baseline import compare as compare_baseline
from ..classes import per_class
from ..config import RunConfig
from ..results import RunResult
from .followups import Followups


def assemble(cfg: RunConfig, *, reference: str, records: list, judgement, followups: Followups, clip_records: list,
             paths: list[str], logits: dict, frames: dict, artifacts: dict, tolerances: dict, preprocess: dict,
             environment: dict, label_names: dict, run: dict, config: dict, lint: list[dict] | None,
             training: dict | None = None, view_logits: dict | None = None) -> RunResult:
    """The judged run and what follows it, as one result; then what is derived from it (``derive``)."""
    return derive(RunResult(
        verdict=judgement.verdict,
        reference=reference,
        backends=records,
        comparisons=judgement.comparisons,
        clips=clip_records,
        artifacts=artifacts,
        tolerances=tolerances,
        preprocess=preprocess,
        environment=environment,
        notes=judgement.notes + followups.notes,
        problems=judgement.problems,
        failures=judgement.failures,
        training=training,
        logits={"clips": np.array(paths), **logits},
        frames=frames,
        label_names=label_names,
        run=run,
        config=config,
        lint=lint,
        diagnosis=followups.diagnosis,
        hops=judgement.hops,
        first_failing_hop=judgement.first_failing_hop,
        hop_matrix=judgement.hop_matrix,
        preprocessing_attribution=judgement.preprocessing_attribution,
        int8=followups.int8,
        advice=followups.advice,
        repro_inputs=followups.repro_inputs,
        view_comparisons=judgement.view_comparisons,
        view_logits=view_logits or {},
    ), cfg)


def derive(result: RunResult, cfg: RunConfig) -> RunResult:
    """What is derived from a judged result: the per-class numbers and, with ``baseline``, the previous
    release's numbers beside these (its warnings never change the verdict)."""
    result.per_class = per_class(result)
    if cfg.baseline:
        result.baseline = compare_baseline(result, cfg.baseline)
        result.notes += [f"warning: {w}" for w in result.baseline.get("warnings", [])]
    return result
