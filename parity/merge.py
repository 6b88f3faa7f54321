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

from . import pvconfig
from .artifacts import ArtifactCache
from .backends import BACKENDS, LaneKind, Status, select
from .config import config_from_dict, judging_settings
from .errors import HarnessError
from .preprocess import load_clip_tensor
from .results import BackendRecord, ClipRecord, RunResult, verify_report_files
from .run.assemble import assemble
from .run.collect import MAX_THUMBNAIL_CLIPS
from .run.followups import Followups, followups, helper_followups
from .run.plan import artifact_record, open_models, preprocess_config
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
    cfg.validate(BACKENDS)
    golden = first["reference"] if cfg.golden else None  # the shards ran against golden outputs: their reference is those
    selection = select(cfg, golden)
    clips = sorted((ClipRecord(**c) for s in shards for c in s["clips"]), key=lambda c: c.index)
    records = [_merged_record([s["backends"][i] for s in shards]) for i in range(len(first["backends"]))]
    paths = [c.path for c in clips if c.status == "ok"]
    labels = [c.label for c in clips if c.status == "ok"]
    logits = {r.name: _rows(shards, r.name, paths) for r in records if r.status == "ok"}
    # another helper's model with several rows per clip: each lane's view rows (logits.npz ``NAME[views]``)
    view_logits = {r.name: _rows(shards, f"{r.name}[views]", paths) for r in records
                   if r.status == "ok" and all(f"{r.name}[views]" in s["_logits"] for s in shards)}
    changed = sum(s["run"].get("changed_clips", 0) for s in shards)
    judgement = judge(selection, records, logits, paths, labels, cfg, changed, first.get("lint"), view_logits)
    follow = _followups(cfg, first, shards, judgement, records, clips)

    frames = {}
    order = {c.path: c.index for c in clips}
    for path, arr in sorted(((p, a) for s in shards for p, a in s["_frames"].items()), key=lambda pa: order.get(pa[0], 0)):
        if len(frames) < MAX_THUMBNAIL_CLIPS:
            frames[path] = arr
    run = {**first["run"], "shard": None, "merged_from": [str(Path(f).resolve()) for f in folders],
           "decode": {k: _joined([s["run"]["decode"][k] for s in shards]) for k in first["run"]["decode"]},
           "seconds": sum(s["run"]["seconds"] for s in shards), "changed_clips": changed}
    return assemble(
        cfg, reference=first["reference"], records=records, judgement=judgement, followups=follow, clip_records=clips,
        paths=paths, logits=logits, frames=frames, artifacts=first["artifacts"], tolerances=first["tolerances"],
        preprocess=first["preprocess"], environment=_environment(shards),
        label_names={int(k): v for k, v in (first.get("label_names") or {}).items()}, run=run, config=first["config"],
        lint=first.get("lint"), training=first.get("training"), view_logits=view_logits,
    )


def _environment(shards: list[dict]) -> dict:
    """The first shard's environment; shards that ran on machines or versions of their own (a gate that travels) are
    each kept whole under ``per_shard``, in shard order, so the record never claims one machine for all."""
    envs = [s.get("environment") or {} for s in shards]
    env = dict(envs[0])
    if any(e != envs[0] for e in envs[1:]):
        env["per_shard"] = envs
    return env


def _rows(shards: list[dict], key: str, paths: list[str]) -> np.ndarray:
    """The shards' logits.npz arrays ``key`` joined in ``paths`` order (each shard's rows by its own clip list)."""
    rows = {}
    for s in shards:
        rows.update(zip((str(p) for p in s["_logits"]["clips"]), s["_logits"][key]))
    return np.stack([rows[p] for p in paths]).astype(np.float32)


def _followups(cfg, first: dict, shards: list[dict], judgement, records, clips) -> Followups:
    """The follow-ups of the joined comparisons, made as an unsharded run makes them, from the models and clips
    the shards recorded (checked by content). Where they are not here, each shard's own are kept, and said."""
    if first["preprocess"].get("recipe"):  # another helper's run: its follow-ups are what an unsharded run says of them
        return helper_followups(cfg, first["preprocess"]["recipe"]["helper"], judgement.comparisons + judgement.view_comparisons)
    wanted = cfg.localize or cfg.advise or any(s.get("int8") for s in shards) or any(not c.passed for c in judgement.comparisons)
    if not wanted:
        return Followups()
    try:
        art, golden = open_models(cfg, ArtifactCache())
        pv = pvconfig.apply(cfg)  # read once, as a run reads it
        pre = preprocess_config(cfg, art, golden, pv)
        here = artifact_record(cfg, art, golden, pv)
        changed = [k for k, v in first["artifacts"].items() if k.endswith("sha256") and here.get(k) != v]
        if changed:
            raise HarnessError(f"{changed[0].removesuffix('_sha256').removesuffix(':sha256')} is not the file the shards ran")
        return followups(cfg, art, judgement.comparisons, records, clips, lambda path: load_clip_tensor(Path(path), pre))
    except HarnessError as exc:
        kept = Followups(diagnosis=[d for s in shards for d in s.get("diagnosis") or []],
                         advice=[a for s in shards for a in s.get("advice") or []], int8=_joined_int8(shards))
        if kept.int8 and kept.int8["calibration_overlap"]:
            kept.notes.append(f"calibration set overlaps the evaluated clips: {kept.int8['calibration_overlap']} clip(s) are in both; "
                              "the INT8 numbers are optimistic")
        kept.notes.append(f"warning: the follow-ups (repro clips, diagnosis, advice) are each shard's own, not made again on the "
                          f"joined comparisons: {exc}")
        return kept


def _joined_int8(shards: list[dict]) -> dict | None:
    """The INT8 record (one model, one calibration set) with its overlap counted over every shard's clips."""
    parts = [s["int8"] for s in shards if s.get("int8")]
    return {**parts[0], "calibration_overlap": sum(p.get("calibration_overlap", 0) for p in parts)} if parts else None


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
