"""A parity run: clips -> tensors (streamed, decoded once) -> every backend's runner -> comparisons -> verdict."""
from __future__ import annotations

import heapq
import time
from pathlib import Path

import numpy as np

from .artifacts import ArtifactCache, PaddleModel, sha256_file, sha256_json
from .artifacts.model_files import check_batch, model_classes, model_input
from .backends import BACKENDS, LaneKind, ModelArtifacts, Status, select
from .clips import load_clips, load_label_names
from .compare import badness, clip_verdict, worst_clips
from .config import RunConfig, config_to_dict, judging_settings
from .engines import get_engine
from .env import environment
from .errors import HarnessError, check_interrupted
from .golden import GOLDEN_JSON, ClipChanged, Golden, NotInGolden
from .inputs import ClipInput, TensorCache
from .preprocess import PreprocessConfig
from .progress import progress
from .results import BackendRecord, ClipRecord, RunResult
from .stream import DecodeStats, ThreadBudget
from .verdict import judge

MAX_THUMBNAIL_CLIPS = 24
REPRO_CLIPS = 4  # the worst failing clips whose input tensors go into the repro bundle


def run(cfg: RunConfig, cache: ArtifactCache | None = None, threads: int | None = None, shard: str | None = None) -> RunResult:
    """Stream every clip through every backend once, compare with the reference, decide.

    Stages: models -> preprocessing -> backend selection -> clips (this shard's) -> decode
    (parallel, each clip once) -> every lane's runner (activated once) -> comparisons and
    verdict -> the result. Memory holds only the clips in flight plus per-clip numbers.
    """
    started = time.perf_counter()
    cfg.validate()
    art, golden = _open_models(cfg, cache or ArtifactCache(), threads)
    pre = _preprocess_config(cfg, art, golden)
    art.pre = pre
    art.allow_trt_fallback = cfg.allow_trt_fallback
    if cfg.calibration:
        art.calibration = Path(cfg.calibration)
        if not art.calibration.exists():
            raise HarnessError(f"{cfg.calibration}: calibration clip list not found")
    selection = select(cfg, golden.name if golden else None)
    if golden is None:  # said before any clip is decoded, with what to do about it
        reason = BACKENDS[selection.reference].availability(art)
        if reason:
            runnable = [lane.name for lane in selection.lanes if lane.name in BACKENDS and BACKENDS[lane.name].availability(art) is None]
            hint = f" (e.g. --reference {runnable[0]})" if runnable else ""
            raise HarnessError(f"reference {selection.reference} cannot run: {reason.removeprefix('unavailable: ')}; "
                               f"give what it needs, or pick another --reference{hint}")
    if any(lane.backend.needs == "external" for lane in selection.lanes):
        art.classes = model_classes(art) if (art.onnx or art.paddle_model) else int(golden.logits.shape[1])
    art.batch = max(lane.batch for lane in selection.lanes)
    check_batch(art, art.batch)
    shard_spec = parse_shard(shard)
    clips = _indexed_clips(cfg, golden, shard_spec)
    budget = ThreadBudget.plan(cfg.workers, threads)
    art.threads = budget.backend_threads

    findings = _lint(cfg, art)
    collector, records, stats, cluster = _stream(cfg, selection, art, pre, golden, clips, budget)
    check_interrupted()
    if not collector.paths:
        first = next((c.error for c in collector.clip_records if c.error), "")
        raise HarnessError(f"{cfg.clips or golden.folder}: no readable clip ({len(collector.clip_records)} listed; first error: {first})")
    if golden is not None:
        stored = f"stored outputs of {golden.meta['reference']} ({golden.folder}, saved {golden.meta['saved']})"
        records.insert(0, BackendRecord(selection.reference, "fp32", stored, Status.OK, kind=LaneKind.GOLDEN))
    logits = collector.logits(records)
    selection.notes += [f"warning: {n}" for n in clips.notes] + _cache_notes(stats)
    verdict = judge(selection, records, logits, collector.paths, collector.labels, cfg, collector.changed, findings)
    diagnosis = _localize(cfg, art, pre, verdict.comparisons, collector) if cfg.localize else []
    int8 = _int8_record(art, records, collector, verdict.notes)
    advice = _advise(cfg, art, verdict.comparisons, collector) if cfg.advise else []

    label_file = _label_file(cfg)
    artifacts = _artifact_record(cfg, art, golden, label_file)
    judging = {"settings": judging_settings(cfg), "content": {k: v for k, v in artifacts.items() if k.endswith("sha256")}}
    return derive(RunResult(
        verdict=verdict.verdict,
        reference=selection.reference,
        backends=records,
        comparisons=verdict.comparisons,
        clips=collector.clip_records,
        artifacts=artifacts,
        tolerances={p: t.to_dict() for p, t in cfg.tolerances.items()} | {"per_backend": cfg.backend_tolerances},
        preprocess={**pre.to_dict(), "input_name": art.input_name},
        environment=environment(),
        notes=verdict.notes,
        problems=verdict.problems,
        failures=verdict.failures,
        logits={"clips": np.array(collector.paths), **logits},
        frames=collector.frames,
        label_names=load_label_names(label_file),
        run={
            "engine": cfg.engine,
            "cluster": cluster,  # the Ray cluster: version, auth, nodes, CPUs, GPUs, what the run used
            "batch_size": cfg.batch_size,
            "batch_check": cfg.batch_check,
            "shard": shard_spec and {"index": shard_spec[0], "count": shard_spec[1], "clips_listed": clips.listed},
            # what proves shards are one run (`parity merge`): the same list (content, order) and judging configuration
            "list_sha256": clips.list_sha256,
            "judging_sha256": sha256_json(judging),
            "budget": budget.to_dict(),
            "decode": stats.to_dict(),
            "tensor_cache": TensorCache(cfg.tensor_cache).size() if cfg.tensor_cache else None,
            "changed_clips": collector.changed,
            "seconds": round(time.perf_counter() - started, 3),
        },
        config=config_to_dict(cfg),
        lint=findings,
        diagnosis=diagnosis,
        hops=verdict.hops,
        first_failing_hop=verdict.first_failing_hop,
        hop_matrix=verdict.hop_matrix,
        preprocessing_attribution=verdict.preprocessing_attribution,
        int8=int8,
        advice=advice,
        repro_inputs=[(path, label, tensor) for _, path, label, tensor in collector.repro()],
    ), cfg)


def derive(result: RunResult, cfg: RunConfig) -> RunResult:
    """What is derived from a judged result, for a run and a merge alike: the per-class numbers and, with
    ``baseline``, the previous release's numbers beside these (its warnings never change the verdict)."""
    from .classes import per_class

    result.per_class = per_class(result)
    if cfg.baseline:
        from .baseline import compare

        result.baseline = compare(result, cfg.baseline)
        result.notes += [f"warning: {w}" for w in result.baseline.get("warnings", [])]
    return result


def _cache_notes(stats: DecodeStats) -> list[str]:
    """Tensor-cache entries that failed their proof and were decoded again, said once (each is in run.decode)."""
    rejected = stats.cache_notes
    if not rejected:
        return []
    return [f"warning: {len(rejected)} tensor cache entr{'y' if len(rejected) == 1 else 'ies'} failed their content check and "
            f"{'was' if len(rejected) == 1 else 'were'} decoded again (first: {rejected[0]})"]


def _lint(cfg: RunConfig, art: ModelArtifacts) -> list[dict] | None:
    """The lint of the ONNX model against the Paddle program, when both are given and --lint is not off."""
    if cfg.lint == "off" or art.paddle_model is None or art.onnx is None:
        return None
    from .diagnose.lint import Finding, lint

    try:
        return [f.to_dict() for f in lint(art.paddle_model, art.onnx)]
    except HarnessError as exc:  # the run goes on and reports on its own; the lint could not vouch for the model
        return [Finding("lint-cannot-read-program", "", "", "", "", None, None, str(exc)).to_dict()]


def _localizable(name: str, needs: str) -> bool:
    """A backend whose intermediates can be exposed, on one side of a localization: "onnx" (ONNX Runtime) or "paddle" (the program)."""
    return name in BACKENDS and BACKENDS[name].localizable and BACKENDS[name].needs == needs


def _localize(cfg: RunConfig, art: ModelArtifacts, pre: PreprocessConfig, comparisons, collector) -> list[dict]:
    """For each failing ONNX Runtime pair against the Paddle program: where it diverged, on its worst clip.

    The worst clip is decoded once more (the run kept no tensors); other backends say why not.
    """
    from .diagnose.localize import localize
    from .preprocess import load_clip_tensor

    out = []
    for comp in comparisons:
        if comp.passed:
            continue
        backend = comp.base_backend
        if not _localizable(backend, "onnx") or not _localizable(comp.reference, "paddle") or art.paddle_model is None:
            out.append({"backend": comp.backend, "against": comp.reference, "note": "localization needs an ONNX Runtime backend "
                        "compared with the Paddle program (paddle or paddle-native)", "first_divergence": None, "curve": []})
            continue
        (worst,) = worst_clips(comp, 1)
        clip = next(c for c in collector.clip_records if c.path == worst.path)
        x = load_clip_tensor(Path(clip.path), pre)
        onnx_model = art.onnx
        if BACKENDS[backend].precision == "fp16":
            from .artifacts import cached_fp16

            onnx_model = cached_fp16(art.onnx, art.cache)
        out.append(localize(art.paddle_model, onnx_model, x, comp.backend, comp.reference, clip.path, BACKENDS[backend].precision).to_dict())
    return out


def _advise(cfg: RunConfig, art: ModelArtifacts, comparisons, collector) -> list[dict]:
    """For each failing FP16/INT8 ONNX Runtime pair: the nodes to keep in FP32, verified on the run's worst clips."""
    from .precision.advise import advise
    from .precision.int8 import calibration_tensors

    tensors = [tensor for *_, tensor in collector.repro()]
    out = []
    for comp in comparisons:
        if comp.passed or comp.backend not in BACKENDS or not BACKENDS[comp.backend].advisable or not tensors:
            continue
        precision = BACKENDS[comp.backend].precision
        calibration = calibration_tensors(art.calibration, art.pre)[0] if precision == "int8" else None
        out.append({"backend": comp.backend, **advise(art.onnx, tensors, precision, cfg.tolerances, calibration, art.paddle_model).to_dict()})
    return out


def _int8_record(art: ModelArtifacts, records, collector, notes: list[str]) -> dict | None:
    """How the INT8 model was made, its per-layer SQNR (worst first, in Paddle's names), and any calibration overlap."""
    if not any(r.name == "onnxruntime-int8" and r.status == "ok" for r in records):
        return None
    import onnx

    from .diagnose.lint import tensor_owners
    from .diagnose.program import read_program
    from .precision.int8 import cached_int8

    _, record = cached_int8(art.onnx, art.calibration, art.pre, art.cache)
    owners = tensor_owners(read_program(art.paddle_model), onnx.load(str(art.onnx))) if art.paddle_model else {}
    labels = {name: op.label for name, op in owners.items()}
    overlap = len(set(record.pop("calibration_sha256")) & {c.sha256 for c in collector.clip_records if c.sha256})
    if overlap:
        notes.append(f"calibration set overlaps the evaluated clips: {overlap} clip(s) are in both; the INT8 numbers are optimistic")
    record["calibration_overlap"] = overlap
    record["sqnr"] = [{**row, "paddle_op": labels.get(row["tensor"], "")} for row in record["sqnr"][:20]]
    return record


class Collector:
    """What a run keeps of each clip as it streams by: its record, each lane's logits row, and
    (for the first clips that fail or flip anywhere) small frames for the report."""

    def __init__(self, selection, cfg: RunConfig, golden: Golden | None):
        self.selection, self.cfg, self.golden = selection, cfg, golden
        self.clip_records: list[ClipRecord] = []
        self.rows: dict[str, list[np.ndarray]] = {}
        self.paths: list[str] = []
        self.labels: list[int | None] = []
        self.frames: dict[str, np.ndarray] = {}
        self.changed = 0
        self._pending: dict[int, ClipRecord] = {}  # admitted clips not yet delivered
        self.worst: list[tuple] = []  # a min-heap of (compare.badness, path, label, tensor), at most REPRO_CLIPS

    def admit(self, item: ClipInput) -> bool:
        """Record a decoded clip; True when the backends should run it."""
        record = ClipRecord(path=str(item.clip.path), label=item.clip.label, status=Status.OK, sha256=item.sha256, index=item.index)
        if item.ok and self.golden is not None:
            try:
                item.golden_row = self.golden.row_for(str(item.clip.path), item.sha256)
            except NotInGolden as exc:
                item.tensor, item.error = None, str(exc)
                self.changed += isinstance(exc, ClipChanged)
        if not item.ok:
            record.status, record.error = Status.ERROR, item.error
        self.clip_records.append(record)
        self._pending[item.index] = record
        return item.ok

    def on_clip(self, item: ClipInput, rows: dict[str, np.ndarray]) -> None:
        record = self._pending.pop(item.index)
        if self.golden is not None:
            rows = {**rows, self.selection.reference: item.golden_row}
        classes = len(next(iter(rows.values()))) if rows else None
        label = item.clip.label
        if classes is not None and label is not None and not 0 <= label < classes:
            record.status, record.error = Status.ERROR, f"{item.clip.path}: label {label} is outside the model's {classes} classes (0..{classes - 1})"
            return
        for name, row in rows.items():
            self.rows.setdefault(name, []).append(row)
        self.paths.append(str(item.clip.path))
        self.labels.append(item.clip.label)
        score = self._flagged(rows)
        if score is None:
            return
        if len(self.frames) < MAX_THUMBNAIL_CLIPS:
            self.frames[str(item.clip.path)] = thumbnail_frames(item.tensor)
        entry = (badness(True, score, item.index), str(item.clip.path), item.clip.label, item.tensor)
        if len(self.worst) < REPRO_CLIPS:
            heapq.heappush(self.worst, entry)
        elif entry[0] > self.worst[0][0]:
            heapq.heapreplace(self.worst, entry)

    def repro(self) -> list[tuple]:
        """The worst clips kept, worst first: ``(badness, path, label, tensor)``."""
        return sorted(self.worst, key=lambda e: e[0], reverse=True)

    def _flagged(self, rows: dict[str, np.ndarray]) -> float | None:
        """None when the clip passes everywhere; else how far out it is (largest error over atol)."""
        worst = None
        for lane in self.selection.compared:
            if lane.name in rows and lane.against in rows:
                tol = self.cfg.tolerance_for(lane.name, lane.backend.precision, lane.backend.name)
                over = clip_verdict(rows[lane.against], rows[lane.name], tol)
                if over is not None:
                    worst = max(worst or 0.0, over)
        return worst

    def logits(self, records: list[BackendRecord]) -> dict[str, np.ndarray]:
        """``[clips, classes]`` per lane that ran to the end."""
        ok = {r.name for r in records if r.status == "ok"}
        return {name: np.stack(rows) for name, rows in self.rows.items() if name in ok and len(rows) == len(self.paths)}


def _stream(cfg, selection, art, pre, golden, clips, budget):
    """Decode -> admit -> every lane, one bar over the clips."""
    engine = get_engine(cfg.engine, isolate=cfg.isolate, address=cfg.ray_address, timeout=cfg.backend_timeout, shared_paths=cfg.ray_shared_paths)
    collector, stats = Collector(selection, cfg, golden), DecodeStats()
    cache = TensorCache(cfg.tensor_cache) if cfg.tensor_cache else None
    if cache is not None:
        cache.check()
    variants = tuple(lane.variant for lane in selection.attributions)
    items = engine.decode(clips, pre, budget.workers, cache, stats, variants, cfg.decode_timeout)
    admitted = (i for i in progress(items, desc="clips", unit="clip", total=len(clips)) if collector.admit(i))
    records = engine.infer(selection.lanes, art, admitted, collector.on_clip)
    return collector, records, stats, engine.facts() if hasattr(engine, "facts") else None


def thumbnail_frames(tensor: np.ndarray) -> np.ndarray:
    """Small uint8 frames ``[T, h, w, 3]`` of a normalized ``[1, T, 3, S, S]`` clip tensor."""
    from .preprocess import MEAN, STD

    pixels = np.clip((tensor[0] * STD + MEAN) * 255.0, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    step = max(1, pixels.shape[1] // 64)
    return np.ascontiguousarray(pixels[:, ::step, ::step])


class IndexedClips(list):
    """``(index in the full list, clip)`` pairs of this run (all, or one shard's), how many were listed, and
    the content hash of the whole list (its paths, relative to the list's folder, and labels, in order)."""

    listed: int = 0
    list_sha256: str = ""
    notes: list = []


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1 <= i <= N) -> ``(i, N)``."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise HarnessError(f"--shard {text!r}: expected i/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise HarnessError(f"--shard {text!r}: i must be between 1 and N")
    return i, n


def _indexed_clips(cfg: RunConfig, golden: Golden | None, shard: tuple[int, int] | None) -> IndexedClips:
    """The clips this run takes: every one, or with ``--shard i/N`` those whose list index is i-1 modulo N."""
    listed = load_clips(cfg.clips) if cfg.clips else golden.clips()
    out = IndexedClips((i, c) for i, c in enumerate(listed) if shard is None or i % shard[1] == shard[0] - 1)
    out.listed = len(listed)
    out.notes = list(getattr(listed, "notes", []))  # duplicate lines dropped, each clip counted once
    root = Path(cfg.clips) if cfg.clips else golden.folder
    root = root.parent if root.is_file() else root
    out.list_sha256 = sha256_json([[_relative(c.path, root), c.label] for c in listed])
    if shard is not None and not out:
        raise HarnessError(f"--shard {shard[0]}/{shard[1]}: {cfg.clips or golden.folder} lists {len(listed)} clip(s), so shard {shard[0]} "
                           f"of {shard[1]} has none; use at most {max(1, len(listed))} shards")
    return out


def _relative(path: Path, root: Path) -> str:
    """A clip's path as the list gives it, relative to the list's folder where it lies below it."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _label_file(cfg: RunConfig) -> Path | None:
    if cfg.labels:
        return Path(cfg.labels)
    return Path(cfg.clips).parent / "labels.txt" if cfg.clips and Path(cfg.clips).is_file() else None


def _open_models(cfg: RunConfig, cache: ArtifactCache, threads: int | None) -> tuple[ModelArtifacts, Golden | None]:
    """Check the model files (and golden outputs) exist, and read the model's input."""
    art = ModelArtifacts(cache=cache, threads=threads)
    if cfg.trt_engine:
        art.trt_engine = Path(cfg.trt_engine)
        art.trust_engine = cfg.trust_engine
        if not art.trt_engine.is_file():
            raise HarnessError(f"{cfg.trt_engine}: TensorRT engine not found")
    if cfg.paddle_model:
        art.paddle_model = PaddleModel.locate(cfg.paddle_model)
    if cfg.onnx:
        art.onnx = Path(cfg.onnx)
        if not art.onnx.is_file():
            raise HarnessError(f"{cfg.onnx}: ONNX model not found")
    golden = Golden.load(cfg.golden) if cfg.golden else None
    if golden is not None and cfg.clips:
        golden.root = Path(cfg.clips) if Path(cfg.clips).is_dir() else Path(cfg.clips).parent
    if art.paddle_model is None and art.onnx is None and art.trt_engine is None:
        raise HarnessError("no model given: pass --paddle-model and/or --onnx")
    if not cfg.clips and golden is None:
        raise HarnessError("no clips given: pass --clips LIST_OR_DIR")
    if art.paddle_model is None and art.onnx is None:
        art.input_name, art.num_seg, art.size = golden.meta["preprocess"]["input_name"], None, None
    else:
        art.input_name, art.num_seg, art.size = model_input(art)
    if cfg.weights:
        art.weights, art.dygraph = _dygraph_model(cfg, art)
    return art, golden


def _dygraph_model(cfg: RunConfig, art: ModelArtifacts) -> tuple[Path, dict]:
    """The checkpoint and its model: each setting from the flags, else a model_spec.json beside it, else read
    from the checkpoint itself (LTA from its keys, scale, depths and width from its shapes), else PaddleVideo's
    defaults; classes, T and size always from the exported model."""
    import json

    from .checkpoint import spec_from_checkpoint
    from .models import ModelSpec

    weights = Path(cfg.weights)
    if not weights.is_file():
        raise HarnessError(f"{weights}: training checkpoint not found")
    keys = ("arch", "temporal_attention", "scale", "depths", "class_expand")
    given = {}
    beside = weights.parent / "model_spec.json"
    if beside.is_file():
        try:
            given.update({k: v for k, v in json.loads(beside.read_text()).items() if k in keys})
        except (ValueError, AttributeError) as exc:
            raise HarnessError(f"{beside}: not a JSON object of model settings: {exc}") from None
    given.update({k: getattr(cfg, k) for k in keys if getattr(cfg, k) is not None})
    inferred = spec_from_checkpoint(weights)
    spec = ModelSpec().to_dict() | {k: inferred[k] for k in keys if k in inferred} | given
    if art.num_seg is None or art.size is None:
        raise HarnessError("--weights: the exported model does not say its segments and size; give --paddle-model or --onnx")
    spec.update(num_seg=art.num_seg, size=art.size, num_classes=model_classes(art))
    return weights, spec


def _preprocess_config(cfg: RunConfig, art: ModelArtifacts, golden: Golden | None) -> PreprocessConfig:
    """T and size from the model (flags must agree); with golden outputs, their preprocessing."""
    model_path = art.paddle_model.model_file if art.paddle_model else art.onnx
    num_seg = _agree("--num-seg", cfg.num_seg, art.num_seg, model_path)
    size = _agree("--target-size", cfg.target_size, art.size, model_path)
    short_size, variant = cfg.short_size, cfg.preprocess_variants()[0]
    if golden is not None:
        # The stored logits are only comparable on the very tensors they were computed from.
        g = golden.meta["preprocess"]
        num_seg = _agree("--num-seg", num_seg, g["num_seg"], golden.folder)
        size = _agree("--target-size", size, g["target_size"], golden.folder)
        short_size = _agree("--short-size", short_size, g["short_size"], golden.folder)
        if variant not in (g["variant"], "paddlevideo"):
            raise HarnessError(f"{golden.folder}: golden outputs use {g['variant']} preprocessing, but --preprocess {variant} was given")
        variant = g["variant"]
    art.num_seg, art.size = num_seg or 8, size or 224
    try:
        return PreprocessConfig.for_size(art.num_seg, art.size, short_size, variant)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None


def _artifact_record(cfg: RunConfig, art: ModelArtifacts, golden: Golden | None, label_file: Path | None) -> dict:
    """Paths (absolute) and sha256 of everything that was compared."""
    artifacts = {"clips": str(Path(cfg.clips).resolve()) if cfg.clips else f"{golden.folder}/{GOLDEN_JSON}", "paddle_model": None, "onnx": None}
    if golden is not None:
        artifacts["golden"] = str(golden.folder.resolve())
        artifacts["golden_artifacts"] = golden.meta["artifacts"]
    if art.paddle_model:
        artifacts["paddle_model"] = str(art.paddle_model.model_file.resolve())
        artifacts["paddle_model_sha256"] = sha256_file(art.paddle_model.model_file)
        artifacts["paddle_params_sha256"] = sha256_file(art.paddle_model.params_file)
    if art.trt_engine:
        artifacts["trt_engine"] = str(art.trt_engine.resolve())
        artifacts["trt_engine_sha256"] = sha256_file(art.trt_engine)
    if art.onnx:
        artifacts["onnx"] = str(art.onnx.resolve())
        artifacts["onnx_sha256"] = sha256_file(art.onnx)
    if label_file and label_file.is_file():
        artifacts["labels"] = str(label_file.resolve())
    # every other file the verdict depends on, by content
    if golden is not None:
        artifacts["golden_npz_sha256"] = golden.meta.get("npz_sha256")
    if art.weights:
        artifacts["weights_sha256"] = sha256_file(art.weights)
    if art.calibration:
        artifacts["calibration_sha256"] = sha256_file(art.calibration) if art.calibration.is_file() else None
    for name, path in sorted(cfg.logits_files.items()):
        artifacts[f"logits_file:{name}:sha256"] = sha256_file(Path(path))
    return artifacts


def _agree(flag: str, given: int | None, from_model: int | None, model_path) -> int | None:
    if given is not None and from_model is not None and given != from_model:
        raise HarnessError(f"{model_path}: the model takes {flag.lstrip('-')} {from_model}, but {flag} {given} was given")
    return given if given is not None else from_model


