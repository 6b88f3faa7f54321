"""``run``: plan -> stream (clips decoded once, every lane) -> the one judge -> follow-ups -> the one assembler."""
from __future__ import annotations

import time
from pathlib import Path

from .. import pvconfig
from ..artifacts import ArtifactCache, sha256_json
from ..backends import LaneKind, Status
from ..clips import load_label_names
from ..config import RunConfig, config_to_dict, judging_settings
from ..env import environment
from ..errors import HarnessError
from ..inputs import TensorCache
from ..preprocess import load_clip_tensor
from ..results import BackendRecord, RunResult
from ..signals import check_interrupted
from ..stream import DecodeStats
from ..verdict import judge
from .assemble import assemble
from .collect import stream
from .followups import followups, helper_followups, lint_models
from .plan import artifact_record, label_file, plan


def run(cfg: RunConfig, cache: ArtifactCache | None = None, threads: int | None = None, shard: str | None = None,
        recipe=None, pv: pvconfig.Applied | None = None) -> RunResult:
    """Stream every clip through every backend once, compare with the reference, decide.

    Stages: plan (models, preprocessing, lanes, this shard's clips, threads) -> decode (parallel, each clip once)
    -> every lane's runner (activated once) -> the judge -> follow-ups -> the result. Memory holds only the
    clips in flight plus per-clip numbers.

    ``recipe``: another PaddleVideo helper's ``parity.recipes.Recipe`` given directly; else --pv-config's helper.
    ``pv``: --pv-config as the command applied it (read once; the plan's ``pv`` is what the whole run uses); else read here.
    """
    started = time.perf_counter()
    p = plan(cfg, cache, threads, shard, recipe, pv)
    findings = lint_models(cfg, p.art)
    collector, records, stats, cluster = stream(p)
    check_interrupted()
    if not collector.paths:
        first = next((c.error for c in collector.clip_records if c.error), "")
        raise HarnessError(f"{cfg.clips or p.golden.folder}: no readable clip ({len(collector.clip_records)} listed; first error: {first})")
    if p.golden is not None:
        stored = f"stored outputs of {p.golden.meta['reference']} ({p.golden.folder}, saved {p.golden.meta['saved']})"
        records.insert(0, BackendRecord(p.selection.reference, "fp32", stored, Status.OK, kind=LaneKind.GOLDEN))
    logits, view_logits = collector.logits(records), collector.view_logits(records)
    p.selection.notes += [f"warning: {n}" for n in p.clips.notes] + _cache_notes(stats)
    judgement = judge(p.selection, records, logits, collector.paths, collector.labels, cfg, collector.changed, findings, view_logits)
    kept = {path: tensor for _, path, _, tensor in collector.worst}

    def tensor_of(path: str):
        """The kept tensor of a worst clip, else the clip decoded again (the same bits)."""
        return kept[path] if path in kept else load_clip_tensor(Path(path), p.pre)

    if p.recipe is None:
        follow = followups(cfg, p.art, judgement.comparisons, records, collector.clip_records, tensor_of)
    else:
        follow = helper_followups(cfg, p.recipe.helper, judgement.comparisons + judgement.view_comparisons)
    artifacts = artifact_record(cfg, p.art, p.golden, p.pv)
    judging = {"settings": judging_settings(cfg), "content": {k: v for k, v in artifacts.items() if k.endswith("sha256")}}
    labels = label_file(cfg, p.pv)
    return assemble(
        cfg, reference=p.selection.reference, records=records, judgement=judgement, followups=follow,
        clip_records=collector.clip_records, paths=collector.paths, logits=logits, frames=collector.frames, artifacts=artifacts,
        tolerances={k: t.to_dict() for k, t in cfg.tolerances.items()} | {"per_backend": cfg.backend_tolerances},
        preprocess={**p.pre.to_dict(), "input_name": p.art.input_name, **pvconfig.record(p.pv), **_helper_record(p)},
        environment=environment(),
        label_names=load_label_names(labels), config=config_to_dict(cfg), lint=findings, view_logits=view_logits,
        run={
            "engine": cfg.engine,
            "cluster": cluster,  # the Ray cluster: version, auth, nodes, CPUs, GPUs, what the run used
            "batch_size": cfg.batch_size,
            "batch_check": cfg.batch_check,
            "shard": p.shard and {"index": p.shard[0], "count": p.shard[1], "clips_listed": p.clips.listed},
            # what proves shards are one run (`parity merge`): the same list (content, order) and judging configuration
            "list_sha256": p.clips.list_sha256,
            "judging_sha256": sha256_json(judging),
            "budget": p.budget.to_dict(),
            "schedule": p.schedule,
            "decode": stats.to_dict(),
            "tensor_cache": TensorCache(cfg.tensor_cache).size() if cfg.tensor_cache else None,
            "changed_clips": collector.changed,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


def _helper_record(p) -> dict:
    """Another helper's run: the recipe it decoded with, the model's inputs (names, dims, layouts) and rows per clip."""
    if p.recipe is None:
        return {}
    return {"recipe": p.recipe.to_dict(), "inputs": [i.to_dict() for i in p.art.inputs], "views_per_clip": p.art.views}


def _cache_notes(stats: DecodeStats) -> list[str]:
    """Tensor-cache entries that failed their proof and were decoded again, said once (each is in run.decode)."""
    rejected = stats.cache_notes
    if not rejected:
        return []
    return [f"warning: {len(rejected)} tensor cache entr{'y' if len(rejected) == 1 else 'ies'} failed their content check and "
            f"{'was' if len(rejected) == 1 else 'were'} decoded again (first: {rejected[0]})"]

