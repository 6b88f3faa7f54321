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

from .backends import LaneKind, Status, select
from .config import config_from_dict
from .errors import HarnessError
from .results import BackendRecord, ClipRecord, RunResult, verify_report_files
from .run import MAX_THUMBNAIL_CLIPS, derive
from .verdict import judge

# Content hashes every shard must share with the others (see run._artifact_record).
_SAME_CONTENT = ("paddle_model_sha256", "paddle_params_sha256", "onnx_sha256", "trt_engine_sha256", "golden_npz_sha256",
                 "weights_sha256", "calibration_sha256")


def _load(folder: Path) -> dict:
    results, logits = folder / "results.json", folder / "logits.npz"
    if not results.is_file() or not logits.is_file():
        raise HarnessError(f"{folder}: not a report folder of `parity run` (needs results.json and logits.npz)")
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{results}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict) or not data["run"].get("shard"):
        raise HarnessError(f"{folder}: not a shard (run it with `parity run --shard i/N`)")
    if data.get("complete") is not True:
        raise HarnessError(f"{results}: the shard's report is not complete (its run was interrupted or the file was edited)")
    verify_report_files(folder, data)
    if not all(isinstance(data["run"].get(k), str) for k in ("list_sha256", "judging_sha256")):
        raise HarnessError(f"{results}: the shard does not record its clip list and judging configuration; run it again with this version")
    try:
        with np.load(logits, allow_pickle=False) as npz:
            data["_logits"] = {k: npz[k] for k in npz.files}
        frames = folder / "frames.npz"
        data["_frames"] = dict(np.load(frames, allow_pickle=False)) if frames.is_file() else {}
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{folder}: cannot read its logits or frames: {exc}") from None
    return data


def check_output(folders: list[str | Path], report: str | Path) -> None:
    """The merged report may not be written into (or around) one of the shards it reads."""
    out = Path(report).resolve()
    for folder in folders:
        shard = Path(folder).resolve()
        if out == shard or out.is_relative_to(shard) or shard.is_relative_to(out):
            raise HarnessError(f"--report {report}: it is (or holds, or lies in) the shard {folder}; write the merged report elsewhere")


def _check_one_run(shards: list[dict], folders: list) -> None:
    """Refuse shards that are not the slices of one run: another count, list, judging configuration or
    model, a missing or repeated slice, or a slice that does not hold exactly its clips."""
    first, name0 = shards[0], folders[0]
    count, listed = first["run"]["shard"]["count"], first["run"]["shard"]["clips_listed"]
    for shard, folder in zip(shards, folders):
        spec = shard["run"]["shard"]
        if spec["count"] != count:
            raise HarnessError(f"{folder}: shard {spec['index']}/{spec['count']}, but {name0} is one of {count}; shards must share their count")
        if shard["run"]["list_sha256"] != first["run"]["list_sha256"] or spec["clips_listed"] != listed:
            raise HarnessError(f"{folder}: ran another clip list than {name0} (its content or order differs); shards must share one list")
        if shard["run"]["judging_sha256"] != first["run"]["judging_sha256"]:
            key = _differing_setting(first, shard)
            raise HarnessError(f"{folder}: its {key} differs from {name0}'s; shards must share one judging configuration")
        if [b["name"] for b in shard["backends"]] != [b["name"] for b in first["backends"]]:
            raise HarnessError(f"{folder}: ran other backends than {name0}")
    seen = sorted(s["run"]["shard"]["index"] for s in shards)
    if seen != list(range(1, count + 1)):
        raise HarnessError(f"shards {', '.join(map(str, seen))} of {count} given: need each of 1..{count} exactly once")
    for shard, folder in zip(shards, folders):
        index = shard["run"]["shard"]["index"]
        have = sorted(c["index"] for c in shard["clips"])
        if have != [i for i in range(listed) if i % count == index - 1]:
            raise HarnessError(f"{folder}: does not hold exactly the clips of shard {index}/{count} of the {listed}-clip list")
        ok = [c["path"] for c in sorted(shard["clips"], key=lambda c: c["index"]) if c["status"] == "ok"]
        if [str(p) for p in shard["_logits"].get("clips", [])] != ok:
            raise HarnessError(f"{folder}: its logits.npz does not hold its readable clips in list order")


def _differing_setting(a: dict, b: dict) -> str:
    """The first judging setting or model file whose value differs between two shards."""
    from .config import judging_settings

    sa, sb = judging_settings(config_from_dict(a["config"])), judging_settings(config_from_dict(b["config"]))
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key) != sb.get(key):
            return f"setting {key!r}"
    for key in sorted(set(a["artifacts"]) | set(b["artifacts"])):
        if key.endswith("sha256") and a["artifacts"].get(key) != b["artifacts"].get(key):
            return f"{key.removesuffix('_sha256').removesuffix(':sha256')} (by content)"
    return "judging configuration"


def merge_reports(folders: list[str | Path], report: str | Path | None = None) -> RunResult:
    if report is not None:
        check_output(folders, report)
    shards = [_load(Path(f)) for f in folders]
    _check_one_run(shards, folders)
    first = shards[0]

    cfg = config_from_dict(first["config"])
    cfg.validate()
    golden = first["reference"] if cfg.golden else None  # the shards ran against golden outputs: their reference is those
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

    frames = {}
    order = {c.path: c.index for c in clips}
    for path, arr in sorted(((p, a) for s in shards for p, a in s["_frames"].items()), key=lambda pa: order.get(pa[0], 0)):
        if len(frames) < MAX_THUMBNAIL_CLIPS:
            frames[path] = arr
    run = {**first["run"], "shard": None, "merged_from": [str(Path(f).resolve()) for f in folders],
           "decode": {k: _joined([s["run"]["decode"][k] for s in shards]) for k in first["run"]["decode"]},
           "seconds": sum(s["run"]["seconds"] for s in shards), "changed_clips": changed}
    return derive(RunResult(
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
        failures=verdict.failures,
        logits={"clips": np.array(paths), **logits},
        frames=frames,
        label_names={int(k): v for k, v in (first.get("label_names") or {}).items()},
        run=run,
        config=first["config"],
        lint=first.get("lint"),
        diagnosis=[d for s in shards for d in s.get("diagnosis") or []],
        hops=verdict.hops,
        first_failing_hop=verdict.first_failing_hop,
        hop_matrix=verdict.hop_matrix,
        preprocessing_attribution=verdict.preprocessing_attribution,
        training=first.get("training"),
        int8=first.get("int8"),
        advice=[a for s in shards for a in s.get("advice") or []],
    ), cfg)


def _joined(values: list):
    """One decode count over the shards: numbers add up, lists (notes) are joined."""
    if all(isinstance(v, list) for v in values):
        return [x for v in values for x in v]
    return sum(values)


def _merged_record(parts: list[dict]) -> BackendRecord:
    """One backend across shards: an error anywhere is its error; unavailable anywhere, unavailable."""
    worst = next((p for p in parts if p["status"] == "error"), None) or next((p for p in parts if p["status"] == "unavailable"), parts[0])
    return BackendRecord(
        name=worst["name"], precision=worst["precision"], description=worst["description"], status=Status(worst["status"]), reason=worst["reason"],
        latency_ms=[ms for p in parts for ms in p["latency_ms"]], batch=worst.get("batch", 1),
        kind=LaneKind(worst.get("kind", LaneKind.MAIN)),  # older results.json: no kind, all main
        clip_errors={k: v for p in parts for k, v in (p.get("clip_errors") or {}).items()},
        notes=list(dict.fromkeys(n for p in parts for n in p.get("notes") or [])),
        batch_shapes=[list(t) for t in dict.fromkeys(tuple(s) for p in parts for s in p.get("batch_shapes") or [])],
        evidence=next((p["evidence"] for p in parts if p.get("evidence")), None),
    )
