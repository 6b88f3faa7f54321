"""A parity run: clips -> tensors (decoded once) -> every backend's runner -> comparisons -> verdict."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np

from .backends import BACKENDS, ModelArtifacts, resolve
from .build import ArtifactCache, PaddleModel, sha256_file
from .clips import load_clips, load_label_names
from .compare import compare_logits
from .config import RunConfig
from .errors import HarnessError, one_line
from .golden import GOLDEN_JSON, ClipChanged, Golden, NotInGolden
from .inputs import ClipInput, prepare_inputs
from .preprocess import PreprocessConfig
from .progress import progress
from .results import BackendRecord, ClipRecord, RunResult


def _onnx_inputs(path: Path) -> list[tuple[str, list]]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others on a bad file
        raise HarnessError(f"{path}: not a readable ONNX model: {one_line(exc)}") from None
    inits = {i.name for i in model.graph.initializer}
    return [
        (i.name, [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim])
        for i in model.graph.input
        if i.name not in inits
    ]


def model_input(art: ModelArtifacts) -> tuple[str, int | None, int | None]:
    """The models' input name, segment count and crop size, read from the model files.

    Both the Paddle model and the ONNX model are read when given; they must agree.
    """
    found = []
    if art.paddle_model is not None:
        found.append((art.paddle_model.model_file, art.paddle_model.inputs()))
    if art.onnx is not None:
        found.append((art.onnx, _onnx_inputs(art.onnx)))
    specs = []
    for path, inputs in found:
        if len(inputs) != 1:
            raise HarnessError(f"{path}: expected one input, found {len(inputs)}: {', '.join(n for n, _ in inputs)}")
        name, dims = inputs[0]
        if len(dims) != 5 or dims[2] != 3:
            raise HarnessError(f"{path}: input {name} has shape {dims}, expected [N, T, 3, H, W]")
        specs.append((path, name, dims[1] if dims[1] > 0 else None, dims[3] if dims[3] > 0 else None))
    if len(specs) == 2 and specs[0][1:] != specs[1][1:]:
        (p0, *a), (p1, *b) = specs
        raise HarnessError(f"{p1}: input (name, T, size) {tuple(b)} differs from {p0.name}'s {tuple(a)}")
    return specs[0][1:]


def environment() -> dict:
    from .backends.gpu import gpu_names

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu": _cpu_name(), "cpu_count": os.cpu_count()}
    gpus = gpu_names()
    env["gpu"] = ", ".join(gpus) if gpus else "none"
    for dist in ("paddlepaddle", "paddlepaddle-gpu", "paddle2onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "polygraphy", "tensorrt", "numpy"):
        try:
            env[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        import paddle

        env["paddle_cuda"] = paddle.version.cuda() if paddle.is_compiled_with_cuda() else "CPU build"
    except ImportError:
        pass
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


MAX_THUMBNAIL_CLIPS = 24


def _flagged_frames(comparisons, good: list[ClipInput]) -> dict[str, np.ndarray]:
    """Small uint8 frames ``[T, h, w, 3]`` of the clips that failed or flipped top-1 anywhere."""
    from .preprocess import MEAN, STD

    flagged = []
    for comp in comparisons:
        for clip in comp.clips:
            if (not clip.passed or not clip.top1_agrees) and clip.path not in flagged:
                flagged.append(clip.path)
    frames = {}
    by_path = {str(i.clip.path): i for i in good}
    for path in flagged[:MAX_THUMBNAIL_CLIPS]:
        tensor = by_path[path].tensor[0]  # [T, 3, S, S], normalized
        pixels = np.clip((tensor * STD + MEAN) * 255.0, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        step = max(1, pixels.shape[1] // 64)
        frames[path] = pixels[:, ::step, ::step]
    return frames


def run(cfg: RunConfig, cache: ArtifactCache | None = None, threads: int | None = None) -> RunResult:
    """Run every configured backend on the same tensors and compare them with the reference.

    The verdict passes only when every backend that ran matched the reference and none crashed.
    An unavailable backend is reported, never counted as passed; ``cfg.require`` makes it an
    error of the run (exit 2) instead of a note.
    """
    art, golden = _open_models(cfg, cache or ArtifactCache(), threads)
    pre = _preprocess_config(cfg, art, golden)
    backends, reference = _select_backends(cfg, golden)

    # clips -> tensors, each decoded once
    clips = load_clips(cfg.clips) if cfg.clips else golden.clips()
    inputs = prepare_inputs(clips, pre)
    golden_rows, changed = _golden_rows(golden, inputs)
    good = [i for i in inputs if i.ok]
    if not good:
        first = next((i.error for i in inputs if i.error), "")
        raise HarnessError(f"{cfg.clips}: no readable clip ({len(inputs)} listed; first error: {first})")

    # tensors -> every backend's logits
    records, logits = [], {}
    if golden is not None:
        records.append(BackendRecord(reference, "fp32", f"stored outputs of {golden.meta['reference']} ({golden.folder}, saved {golden.meta['saved']})", "ok"))
        logits[reference] = np.stack(golden_rows).astype(np.float32)
    for backend in backends:
        record, out = _run_backend(backend, art, good, cfg.isolate)
        records.append(record)
        if out is not None:
            logits[backend.name] = out

    # logits -> comparisons and verdict
    paths = [str(i.clip.path) for i in good]
    comparisons, notes, problems = [], [], []
    by_name = {r.name: r for r in records}
    if by_name[reference].status != "ok":
        problems.append(f"reference {reference} did not run ({by_name[reference].reason}); nothing was compared")
    else:
        labels = [i.clip.label for i in good]
        for backend in backends:
            if backend.name != reference and by_name[backend.name].status == "ok":
                tol = cfg.tolerance_for(backend.name, backend.precision)
                comparisons.append(compare_logits(backend.name, reference, backend.precision, paths, labels, logits[reference], logits[backend.name], tol))
        if not comparisons:
            notes.append("no backend besides the reference ran; nothing was compared")
    for r in records:
        if r.status == "error":
            notes.append(f"{r.name} failed: {r.reason}")
        elif r.status == "unavailable" and r.name in cfg.require:
            problems.append(f"required backend {r.name} did not run ({r.reason})")
        elif r.status == "unavailable":
            notes.append(f"{r.name} not compared: {r.reason}")
    if changed:
        problems.append(f"{len(changed)} clip(s) changed since the golden outputs were saved; they were not compared")
    errored = any(r.status == "error" for r in records)
    passed = bool(comparisons) and all(c.passed for c in comparisons) and not errored and not problems

    label_file = Path(cfg.labels) if cfg.labels else (Path(cfg.clips).parent / "labels.txt" if cfg.clips and Path(cfg.clips).is_file() else None)
    return RunResult(
        verdict="pass" if passed else "fail",
        reference=reference,
        backends=records,
        comparisons=comparisons,
        clips=[_clip_record(i) for i in inputs],
        artifacts=_artifact_record(cfg, art, golden, label_file),
        tolerances={p: t.to_dict() for p, t in cfg.tolerances.items()} | {"per_backend": cfg.backend_tolerances},
        preprocess={**pre.to_dict(), "input_name": art.input_name},
        environment=environment(),
        notes=notes,
        problems=problems,
        logits={"clips": np.array(paths), **logits},
        frames=_flagged_frames(comparisons, good),
        label_names=load_label_names(label_file),
    )


def _open_models(cfg: RunConfig, cache: ArtifactCache, threads: int | None) -> tuple[ModelArtifacts, Golden | None]:
    """Check the model files (and golden outputs) exist, and read the model's input."""
    art = ModelArtifacts(cache=cache, threads=threads)
    if cfg.trt_engine:
        art.trt_engine = Path(cfg.trt_engine)
        if not art.trt_engine.is_file():
            raise HarnessError(f"{cfg.trt_engine}: TensorRT engine not found")
    if cfg.paddle_model:
        art.paddle_model = PaddleModel.locate(cfg.paddle_model)
    if cfg.onnx:
        art.onnx = Path(cfg.onnx)
        if not art.onnx.is_file():
            raise HarnessError(f"{cfg.onnx}: ONNX model not found")
    golden = Golden.load(cfg.golden) if cfg.golden else None
    if art.paddle_model is None and art.onnx is None and art.trt_engine is None:
        raise HarnessError("no model given: pass --paddle-model and/or --onnx")
    if not cfg.clips and golden is None:
        raise HarnessError("no clips given: pass --clips LIST_OR_DIR")
    if art.paddle_model is None and art.onnx is None:
        art.input_name, art.num_seg, art.size = golden.meta["preprocess"]["input_name"], None, None
    else:
        art.input_name, art.num_seg, art.size = model_input(art)
    return art, golden


def _preprocess_config(cfg: RunConfig, art: ModelArtifacts, golden: Golden | None) -> PreprocessConfig:
    """T and size from the model (flags must agree); with golden outputs, their preprocessing."""
    model_path = art.paddle_model.model_file if art.paddle_model else art.onnx
    num_seg = _agree("--num-seg", cfg.num_seg, art.num_seg, model_path)
    size = _agree("--target-size", cfg.target_size, art.size, model_path)
    short_size, variant = cfg.short_size, cfg.preprocess
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


def _select_backends(cfg: RunConfig, golden: Golden | None):
    """The backends to run (the live reference first) and the reference's name."""
    unknown = [n for n in cfg.require if n not in BACKENDS]
    if unknown:
        raise HarnessError(f"--require: unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    backends = resolve(cfg.backends)
    backends += [BACKENDS[n] for n in cfg.require if n not in [b.name for b in backends]]
    if golden is not None:
        return backends, golden.name
    if cfg.reference not in BACKENDS:
        raise HarnessError(f"unknown reference backend {cfg.reference!r}; known: {', '.join(BACKENDS)}")
    if cfg.reference not in [b.name for b in backends]:
        backends.insert(0, BACKENDS[cfg.reference])
    return backends, cfg.reference


def _golden_rows(golden: Golden | None, inputs: list[ClipInput]) -> tuple[list, list]:
    """The stored logits of each readable clip; a clip without them becomes a clip error."""
    rows, changed = [], []
    if golden is None:
        return rows, changed
    for item in inputs:
        if item.ok:
            try:
                rows.append(golden.row_for(str(item.clip.path), item.sha256))
            except NotInGolden as exc:
                item.tensor, item.error = None, str(exc)
                if isinstance(exc, ClipChanged):
                    changed.append(item.clip.path)
    return rows, changed


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
    return artifacts


def _agree(flag: str, given: int | None, from_model: int | None, model_path) -> int | None:
    if given is not None and from_model is not None and given != from_model:
        raise HarnessError(f"{model_path}: the model takes {flag.lstrip('-')} {from_model}, but {flag} {given} was given")
    return given if given is not None else from_model


def _clip_record(item: ClipInput) -> ClipRecord:
    return ClipRecord(
        path=str(item.clip.path), label=item.clip.label, status="ok" if item.ok else "error", error=item.error, sha256=item.sha256
    )


def _run_backend(backend, art: ModelArtifacts, inputs: list[ClipInput], isolate: bool = False):
    """Run one backend on every clip. Isolated backends (GPU ones, paddle-onednn; all with
    ``isolate``) run in their own process, so a native crash is their error, not the end of the run."""
    record = BackendRecord(backend.name, backend.precision, backend.description, status="ok")
    reason = backend.availability(art)
    if reason:
        record.status, record.reason = "unavailable", reason
        return record, None
    rows = []
    try:
        if isolate or backend.isolated:
            from .backends.isolated import IsolatedRunner

            runner = IsolatedRunner(backend.name, art, name=backend.name)
        else:
            runner = backend.make_runner(art)
        with runner:
            for item in progress(inputs, desc=backend.name, unit="clip"):
                outputs = runner.infer({art.input_name: item.tensor}, check_inputs=False)
                if len(outputs) != 1:
                    raise RuntimeError(f"model has {len(outputs)} outputs; expected one (logits)")
                rows.append(np.asarray(next(iter(outputs.values())), dtype=np.float32).reshape(1, -1))
                record.latency_ms.append(runner.inference_time * 1000.0)
    except Exception as exc:  # any backend failure is that backend's error; the others go on
        record.status, record.reason = "error", one_line(exc)
        return record, None
    return record, np.concatenate(rows)
