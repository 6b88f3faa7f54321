"""``parity merge``: the reports of ``parity run --shard i/N`` joined into one result and one verdict.

Each shard's report folder holds its per-clip records (results.json), its logits (logits.npz) and
the frames of its flagged clips (frames.npz). The merge restores the list order, rebuilds the
run's lanes from the saved configuration and judges the joined logits with the very function an
unsharded run uses, so the numbers, the verdict and the exit code are the same.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .backends import select
from .compare import hop_matrix, judge
from .config import config_from_dict
from .errors import HarnessError
from .results import BackendRecord, ClipRecord, RunResult
from .run import MAX_THUMBNAIL_CLIPS

# What must be the same in every shard for their union to be one run.
_SAME = ("reference", "preprocess", "tolerances")
_SAME_ARTIFACTS = ("paddle_model_sha256", "paddle_params_sha256", "onnx_sha256", "trt_engine_sha256", "clips")


def _load(folder: Path) -> dict:
    results, logits = folder / "results.json", folder / "logits.npz"
    if not results.is_file() or not logits.is_file():
        raise HarnessError(f"{folder}: not a report folder of `parity run` (needs results.json and logits.npz)")
    try:
        data = json.loads(results.read_text())
    except ValueError as exc:
        raise HarnessError(f"{results}: not valid JSON: {exc}") from None
    if not (data.get("run") or {}).get("shard"):
        raise HarnessError(f"{folder}: not a shard (run it with `parity run --shard i/N`)")
    with np.load(logits) as npz:
        data["_logits"] = {k: npz[k] for k in npz.files}
    frames = folder / "frames.npz"
    data["_frames"] = dict(np.load(frames)) if frames.is_file() else {}
    return data


def merge_reports(folders: list[str | Path]) -> RunResult:
    shards = [_load(Path(f)) for f in folders]
    first = shards[0]
    count = first["run"]["shard"]["count"]
    seen = sorted(s["run"]["shard"]["index"] for s in shards)
    if seen != list(range(1, count + 1)):
        raise HarnessError(f"shards {', '.join(map(str, seen))} of {count} given: need each of 1..{count} exactly once")
    for shard, folder in zip(shards[1:], folders[1:]):
        for key in _SAME:
            if shard[key] != first[key]:
                raise HarnessError(f"{folder}: its {key} differs from {folders[0]}'s; shards must come from one configuration")
        for key in _SAME_ARTIFACTS:
            if shard["artifacts"].get(key) != first["artifacts"].get(key):
                raise HarnessError(f"{folder}: its {key} differs from {folders[0]}'s; shards must come from one configuration")
        if [b["name"] for b in shard["backends"]] != [b["name"] for b in first["backends"]]:
            raise HarnessError(f"{folder}: ran other backends than {folders[0]}")

    cfg = config_from_dict(first["config"])
    golden = first["reference"] if first["reference"].startswith("golden:") else None
    selection = select(cfg, golden)
    clips = sorted((ClipRecord(**c) for s in shards for c in s["clips"]), key=lambda c: c.index)
    records = [_merged_record([s["backends"][i] for s in shards]) for i in range(len(first["backends"]))]
    paths = [c.path for c in clips if c.status == "ok"]
    labels = [c.label for c in clips if c.status == "ok"]
    logits = {}
    for record in records:
        if record.status != "ok":
            continue
        rows = {}
        for s in shards:
            table = s["_logits"]
            rows.update(zip((str(p) for p in table["clips"]), table[record.name]))
        logits[record.name] = np.stack([rows[p] for p in paths]).astype(np.float32)
    changed = sum(s["run"].get("changed_clips", 0) for s in shards)
    verdict = judge(selection, records, logits, paths, labels, cfg, changed, first.get("lint"))
    hops, first_failing_hop, matrix = hop_matrix(records, logits, paths, labels, cfg)

    frames = {}
    order = {c.path: c.index for c in clips}
    for path, arr in sorted(((p, a) for s in shards for p, a in s["_frames"].items()), key=lambda pa: order.get(pa[0], 0)):
        if len(frames) < MAX_THUMBNAIL_CLIPS:
            frames[path] = arr
    run = {**first["run"], "shard": None, "merged_from": [str(Path(f).resolve()) for f in folders],
           "decode": {k: sum(s["run"]["decode"][k] for s in shards) for k in first["run"]["decode"]},
           "seconds": sum(s["run"]["seconds"] for s in shards), "changed_clips": changed}
    return RunResult(
        verdict=verdict.verdict,
        reference=first["reference"],
        backends=records,
        comparisons=verdict.comparisons,
        clips=clips,
        artifacts=first["artifacts"],
        tolerances=first["tolerances"],
        preprocess=first["preprocess"],
        environment=first["environment"],
        notes=verdict.notes,
        problems=verdict.problems,
        logits={"clips": np.array(paths), **logits},
        frames=frames,
        label_names={int(k): v for k, v in (first.get("label_names") or {}).items()},
        run=run,
        config=first["config"],
        lint=first.get("lint"),
        diagnosis=[d for s in shards for d in s.get("diagnosis") or []],
        hops=hops,
        first_failing_hop=first_failing_hop,
        hop_matrix=matrix,
        preprocessing_attribution=verdict.preprocessing_attribution,
    )


def _merged_record(parts: list[dict]) -> BackendRecord:
    """One backend across shards: an error anywhere is its error; unavailable anywhere, unavailable."""
    worst = next((p for p in parts if p["status"] == "error"), None) or next((p for p in parts if p["status"] == "unavailable"), parts[0])
    return BackendRecord(
        name=worst["name"], precision=worst["precision"], description=worst["description"], status=worst["status"], reason=worst["reason"],
        latency_ms=[ms for p in parts for ms in p["latency_ms"]], batch=worst.get("batch", 1),
        clip_errors={k: v for p in parts for k, v in (p.get("clip_errors") or {}).items()},
        notes=list(dict.fromkeys(n for p in parts for n in p.get("notes") or [])),
    )
