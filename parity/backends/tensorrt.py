"""TensorRT backends through Polygraphy's loaders and TrtRunner.

The engine is built from the ONNX model with an optimization profile over the batch dimension
(T and size fixed by the model), FP16 on for ``tensorrt-fp16`` and TF32 off for ``tensorrt-fp32``.
Built engines and the timing cache are kept on disk; the key (``EngineSpec``) is the ONNX sha256,
the precision and calibration set, the TensorRT and Polygraphy versions, the GPU's name and compute
capability (the device this process gets), TF32, the profile and the hash of the code that builds it.
Every engine gets a ``.json`` sidecar with that key: ``--trt-engine`` needs one (or ``trust_engine``),
and an engine serves only the backend of its precision. When the runner activates, TensorRT's engine
inspector lists each layer's data types: a ``tensorrt-fp16`` engine without an FP16 layer (or an INT8
one without an INT8 layer) is refused. ``evidence()`` keeps what was checked, for results.json.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from polygraphy import config as polygraphy_config
from polygraphy.backend import trt as ptrt  # Polygraphy's TensorRT loaders: tensorrt itself is imported when they run

from ..artifacts import ArtifactCache, cached_fp16, sha256_file, sha256_json
from ..artifacts.cache import code_hash
from ..errors import HarnessError
from ..optional import lazy
from ..precision import int8
from . import gpu
from .registry import profile_shapes

trt = lazy("tensorrt")


def _no_autoinstall() -> None:
    # paddle2onnx 2.x turns this on process-wide; a missing module must never become a pip install.
    polygraphy_config.AUTOINSTALL_DEPS = False


@dataclass(frozen=True)
class EngineSpec:
    """What an engine was built from and for: its cache key and its sidecar."""

    onnx_sha256: str
    tensorrt_version: str
    gpu: str
    precision: str  # "fp32" | "fp16" | "int8"
    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    tf32: bool = False
    # How FP16 is asked for: "builder-flag" (TensorRT <= 10: weakly typed, BuilderFlag.FP16) or "strongly-typed"
    # (TensorRT 11 removed the flag: a strongly typed network from the FP16 ONNX model). "" for FP32.
    fp16_path: str = ""
    # How INT8 is built: "calibrator" (TensorRT <= 10: BuilderFlag.INT8 with Polygraphy's Calibrator on the calibration
    # clips, cache beside the engine) or "qdq" (TensorRT 11: the QDQ model onnxruntime-int8 runs, strongly typed).
    int8_path: str = ""
    calibration_sha256: str = ""  # the calibration set the INT8 engine was calibrated on
    compute_capability: str = ""  # of the device the engine was built on (CUDA_VISIBLE_DEVICES honoured)
    polygraphy_version: str = ""
    code: str = ""  # hash of the harness code that builds engines (gpu.ENGINE_CODE)
    # A model of several inputs (another PaddleVideo helper's): the profile of each input after the first, as
    # (name, min, opt, max). Empty for one input, and then left out of the key (PP-TSM's keys are unchanged).
    extra_inputs: tuple = ()

    def key(self) -> str:
        return sha256_json(self.to_dict())[:24]

    def to_dict(self) -> dict:
        data = asdict(self)
        if not data["extra_inputs"]:
            del data["extra_inputs"]
        return data

    def input_profiles(self) -> list[tuple]:
        """(name, min, opt, max) of every input, in the model's order: one optimization profile over them all."""
        return [(self.input_name, self.min_shape, self.opt_shape, self.max_shape), *(tuple(e) for e in self.extra_inputs)]


def int8_path(trt) -> str:
    """How this TensorRT builds INT8: implicit quantization with a calibrator where the flag exists, else explicit (QDQ)."""
    return "calibrator" if hasattr(getattr(trt, "BuilderFlag", None), "INT8") else "qdq"


def fp16_path(trt) -> str:
    """How this TensorRT builds FP16: its builder flag where it has one (<= 10), else a strongly typed network (11)."""
    return "builder-flag" if hasattr(getattr(trt, "BuilderFlag", None), "FP16") else "strongly-typed"


def build_plan(spec: EngineSpec, trt) -> dict:
    """What the build passes to Polygraphy, for ``spec`` on this TensorRT module (plain data, testable with a fake)."""
    flags = getattr(trt, "BuilderFlag", None)
    tf32_settable = hasattr(flags, "TF32")
    if spec.precision == "int8":
        if spec.int8_path == "calibrator":
            return {"onnx": "fp32", "strongly_typed": False, "fp16": None, "tf32": None, "int8": True, "calibrator": True}
        return {"onnx": "int8-qdq", "strongly_typed": True, "fp16": None, "tf32": None, "int8": None, "calibrator": False}
    if spec.precision != "fp16":
        return {"onnx": "fp32", "strongly_typed": False, "fp16": False, "tf32": False if tf32_settable else None}
    if spec.fp16_path == "builder-flag":
        return {"onnx": "fp32", "strongly_typed": False, "fp16": True, "tf32": None}
    return {"onnx": "fp16", "strongly_typed": True, "fp16": None, "tf32": None}  # types come from the FP16 model


class CalibrationBatches:
    """The INT8 calibrator's data: batches of the shape Polygraphy asks for.

    Polygraphy's Calibrator sets ``input_metadata`` on its data loader (``set_input_metadata``, from
    the calibration profile's OPT shape, which TensorRT calibrates at) before asking for a batch, and
    refuses a batch of another shape (``get_batch`` then returns None and the build fails). The clips
    (``[1, T, 3, S, S]`` each) are stacked into batches of that shape; a remainder too small for a
    batch is filled from the first clips, so every clip is seen.
    """

    def __init__(self, name: str, tensors):
        self.name, self.tensors, self.input_metadata = name, list(tensors), None

    def shape(self) -> tuple[int, ...]:
        meta = self.input_metadata[self.name] if self.input_metadata is not None and self.name in self.input_metadata else None
        if meta is not None and meta.shape is not None:
            return tuple(int(d) for d in meta.shape)
        return tuple(self.tensors[0].shape) if self.tensors else ()

    def __iter__(self):
        shape = self.shape()
        samples = [row for t in self.tensors for row in np.asarray(t, np.float32).reshape(-1, *t.shape[1:])]
        if not samples:
            return
        if tuple(samples[0].shape) != tuple(shape[1:]) or shape[0] < 1:
            raise ValueError(f"calibration clips are {tuple(samples[0].shape)} each; the calibration profile asks for batches of {shape}")
        batch = shape[0]
        for start in range(0, len(samples), batch):
            rows = samples[start:start + batch]
            rows += [samples[i % len(samples)] for i in range(batch - len(rows))]
            yield {self.name: np.stack(rows)}


def create_config(spec: EngineSpec, timing_cache: str | None = None, plan: dict | None = None, calibration=None,
                  calibration_cache: str | None = None):
    """Polygraphy's CreateConfig for ``spec`` (buildable without TensorRT; used only when called).

    ``calibration``: the calibration clips' input tensors, for an INT8 build with Polygraphy's Calibrator.
    """
    _no_autoinstall()
    plan = plan or {"fp16": spec.precision == "fp16", "tf32": spec.tf32}
    profile = ptrt.Profile()
    for name, mn, opt, mx in spec.input_profiles():
        profile.add(name, min=mn, opt=opt, max=mx)
    calibrator = None
    if plan.get("calibrator"):
        calibrator = ptrt.Calibrator(CalibrationBatches(spec.input_name, calibration or []), cache=calibration_cache)
    return ptrt.CreateConfig(fp16=plan["fp16"], tf32=plan["tf32"], int8=plan.get("int8"), calibrator=calibrator, profiles=[profile],
                        load_timing_cache=timing_cache)


def engine_spec(onnx: Path, precision: str, input_name: str, num_seg: int, size: int, batch: int = 1, calibration_sha256: str = "",
                profiles: dict | None = None) -> EngineSpec:
    """The engine's key. ``profiles`` (``ModelArtifacts.profiles()``): {input name: (min, opt, max)} of a model of
    several inputs, in its order; without it, PP-TSM's one input ``input_name`` [N, num_seg, 3, size, size]."""
    device = gpu.cuda_device() or {}
    if profiles:
        (input_name, (mn, opt, mx)), *rest = profiles.items()
        extra = tuple((name, *shapes) for name, shapes in rest)
    else:
        (mn, opt, mx), extra = profile_shapes(num_seg, size, batch), ()
    return EngineSpec(sha256_file(onnx), trt.__version__, device.get("name", "unknown"), precision, input_name, mn, opt, mx,
                      fp16_path=fp16_path(trt) if precision == "fp16" else "", int8_path=int8_path(trt) if precision == "int8" else "",
                      calibration_sha256=calibration_sha256, compute_capability=device.get("compute_capability", ""),
                      polygraphy_version=gpu.library_versions()["polygraphy"], code=code_hash(*gpu.ENGINE_CODE), extra_inputs=extra)


def build_engine(onnx: Path, spec: EngineSpec, cache: ArtifactCache, calibration: Path | None = None, pre=None, built: list | None = None) -> Path:
    """Build (or find in the cache) the serialized engine for ``spec``; returns its path.

    FP16 on TensorRT 11 is a strongly typed network parsed from the FP16 ONNX model the harness
    already makes (the same one ``onnxruntime-fp16`` runs); the sidecar records which path ran.
    INT8 on TensorRT 11 parses the QDQ model made for TensorRT (symmetric, ``cached_int8(target="tensorrt")``).
    Calibration clips are decoded only when the engine (or that QDQ model) is built, never on a cache hit.
    ``built``, when given, gets True appended if this call built the engine.
    """
    _no_autoinstall()
    plan = build_plan(spec, trt)
    timing_cache = cache.root / "trt-timing" / f"{spec.tensorrt_version}-{spec.gpu.replace(' ', '_')}.cache"
    timing_cache.parent.mkdir(parents=True, exist_ok=True)

    def build(d: Path) -> None:
        tensors = None
        if plan["onnx"] == "fp16":
            source = cached_fp16(onnx, cache)
        elif plan["onnx"] == "int8-qdq":
            source = int8.cached_int8(onnx, calibration, pre, cache, target="tensorrt")[0]
        else:
            source = onnx
            if plan.get("calibrator"):
                tensors = int8.calibration_tensors(calibration, pre)[0]
        loader = ptrt.EngineBytesFromNetwork(
            ptrt.NetworkFromOnnxPath(str(source), strongly_typed=plan["strongly_typed"] or None),
            config=create_config(spec, str(timing_cache) if timing_cache.is_file() else None, plan, tensors, str(d / "calibration.cache")),
            save_timing_cache=str(timing_cache),
        )
        (d / "model.engine").write_bytes(loader())
        (d / "model.engine.json").write_text(json.dumps(spec.to_dict(), indent=2))
        if built is not None:
            built.append(True)

    return cache.get_or_build("trt-engine", {"key": spec.key(), **spec.to_dict()}, build) / "model.engine"


def engine_mismatch(meta: dict, precision: str, trt_version: str, gpus: tuple[str, ...], compute_capability: str = "") -> str | None:
    """Why an engine described by ``meta`` (its sidecar) cannot run here, or None."""
    if meta.get("tensorrt_version") != trt_version:
        return f"built with TensorRT {meta.get('tensorrt_version')}, this machine has {trt_version}; rebuild with `parity build`"
    if gpus and meta.get("gpu") not in gpus:
        return f"built for GPU {meta.get('gpu')!r}, this machine has {', '.join(gpus)}; rebuild with `parity build`"
    if compute_capability and meta.get("compute_capability") and meta["compute_capability"] != compute_capability:
        return f"built for compute capability {meta['compute_capability']}, this GPU is {compute_capability}; rebuild with `parity build`"
    if meta.get("precision") != precision:
        return f"is a {meta.get('precision')} engine, not {precision}"
    return None


def read_sidecar(engine: Path, trust: bool = False) -> dict | None:
    """A prebuilt engine's sidecar (``ENGINE.json``). Without one the engine is refused, unless ``trust``: then None."""
    sidecar = engine.with_name(engine.name + ".json")
    if not sidecar.is_file():
        if trust:
            return None
        raise HarnessError(f"{engine}: no sidecar {sidecar.name}, so what it was built from and at which precision is unknown; "
                           "build it with `parity build`, or pass --trust-engine to run it unverified")
    try:
        return json.loads(sidecar.read_text())
    except ValueError as exc:
        raise HarnessError(f"{sidecar}: not a readable sidecar ({exc})") from None


def check_engine_sidecar(engine: Path, precision: str, trust: bool = False, onnx: Path | None = None) -> dict | None:
    """Compare a prebuilt engine's sidecar with this machine and the run's model: a mismatch is a clear error."""
    meta = read_sidecar(engine, trust)
    if meta is None:
        return None
    device = gpu.cuda_device() or {}
    gpus = (device["name"],) if device.get("name") else gpu.gpu_names()
    problem = engine_mismatch(meta, precision, trt.__version__, gpus, device.get("compute_capability", ""))
    if problem is None and onnx is not None and meta.get("onnx_sha256") and meta["onnx_sha256"] != sha256_file(onnx):
        problem = f"was built from another model (ONNX sha256 {meta['onnx_sha256'][:16]}, --onnx is {sha256_file(onnx)[:16]})"
    if problem:
        raise HarnessError(f"{engine}: {problem}")
    return meta


def _datatype(text: str) -> str | None:
    """A TensorRT inspector "Format/Datatype" (or TensorRT 11 "Datatype") string's precision."""
    t = text.upper()
    for marks, name in ((("BFLOAT16", "BF16"), "bf16"), (("FP8", "FLOAT8"), "fp8"), (("INT8",), "int8"), (("HALF", "FP16"), "fp16"),
                        (("FLOAT", "FP32"), "fp32"), (("INT32", "INT64", "BOOL"), "int")):
        if any(m in t for m in marks):
            return name
    return None


def layer_precisions(engine, trt) -> dict:
    """How many layers of ``engine`` touch each data type, from TensorRT's engine inspector
    (``create_engine_inspector().get_layer_information(i, LayerInformationFormat.JSON)``, each layer's
    Inputs/Outputs with "Format/Datatype" on TensorRT 10, "Datatype" on 11). Details exist only in
    engines built with ProfilingVerbosity.DETAILED (Polygraphy's default): else ``detailed`` is False."""
    inspector = engine.create_engine_inspector()
    counts: dict[str, int] = {}
    detailed = 0
    for index in range(engine.num_layers):
        info = json.loads(inspector.get_layer_information(index, trt.LayerInformationFormat.JSON))
        if not isinstance(info, dict):
            continue  # LAYER_NAMES_ONLY: the layer's name, nothing else
        kinds = set()
        for tensor in (info.get("Inputs") or []) + (info.get("Outputs") or []):
            text = tensor.get("Format/Datatype") or " ".join(tensor.get(k, "") for k in ("Datatype", "Format"))
            kind = _datatype(text)
            if kind:
                kinds.add(kind)
        detailed += bool(kinds)
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return {"layers": engine.num_layers, "detailed": detailed > 0, "by_datatype": counts}


def engine_precision(layers: dict) -> str | None:
    """The precision an engine runs at, from ``layer_precisions``: its lowest float type in use."""
    found = layers["by_datatype"]
    if not layers["detailed"]:
        return None
    return "int8" if found.get("int8") else "fp16" if found.get("fp16") or found.get("bf16") else "fp32" if found.get("fp32") else None


def precision_problem(layers: dict, precision: str) -> str | None:
    """Why an engine with these layers is not a ``precision`` engine, or None."""
    if not layers["detailed"]:
        return (f"its {layers['layers']} layers carry no data types (built without ProfilingVerbosity.DETAILED): "
                f"cannot show it is a {precision} engine; rebuild with `parity build`")
    actual = engine_precision(layers)
    if actual != precision:
        what = ", ".join(f"{n} {k}" for k, n in sorted(layers["by_datatype"].items()))
        return f"TensorRT's engine inspector finds a{'n' if actual in ('int8', 'fp16', 'fp32') else ''} {actual} engine ({what} layers), not {precision}"
    return None


def trt_runner(art, precision: str, name: str):
    """A Polygraphy TrtRunner over a cached (or the user's prebuilt) engine.

    The engine is found (or built) lazily, when the runner activates: ``EngineFromBytes`` takes a
    callable returning the serialized engine's bytes. A prebuilt engine (``art.trt_engine``) needs its
    sidecar (or ``art.trust_engine``) and serves only the backend of its precision: another ``tensorrt-*``
    backend builds its own from ``--onnx``. On activation the engine inspector's per-layer data types
    must match ``precision`` (unless an engine without sidecar is trusted: then they are only reported).
    """
    _no_autoinstall()
    trust = bool(getattr(art, "trust_engine", False))
    record: dict = {"kind": "tensorrt", "precision": precision}

    def engine_path() -> Path:
        if art.trt_engine is not None:
            meta = read_sidecar(art.trt_engine, trust)
            if meta is None or meta.get("precision") == precision:
                meta = check_engine_sidecar(art.trt_engine, precision, trust, art.onnx)
                record.update(engine=str(art.trt_engine), source="--trt-engine", engine_sha256=sha256_file(art.trt_engine),
                              sidecar=meta, verified=meta is not None,
                              model_sha256=(meta or {}).get("onnx_sha256"), key=sha256_json(meta)[:24] if meta else None)
                return art.trt_engine
            if art.onnx is None:
                raise HarnessError(f"{art.trt_engine} is a {meta.get('precision')} engine: {name} needs a {precision} one "
                                   f"(give --onnx to build it, or a {precision} engine)")
            record["trt_engine_skipped"] = f"{art.trt_engine} is a {meta.get('precision')} engine; {name} built its own"
        calibration = ""
        if precision == "int8":
            calibration = int8.calibration_key(art.calibration, art.pre)
        spec = engine_spec(art.onnx, precision, art.input_name, art.num_seg, art.size, art.batch, calibration,
                           art.profiles() if art.inputs else None)
        built: list = []
        path = build_engine(art.onnx, spec, art.cache, art.calibration, art.pre, built)
        record.update(engine=str(path), source="built" if built else "cache", key=spec.key(), model_sha256=spec.onnx_sha256, verified=True)
        return path

    class CheckedTrtRunner(ptrt.TrtRunner):
        def activate_impl(self):
            gpu._undecorated(ptrt.TrtRunner.activate_impl)(self)
            check_engine(self.engine, trt, precision, record)

        def evidence(self) -> dict:
            return dict(record)

    return CheckedTrtRunner(ptrt.EngineFromBytes(lambda: engine_path().read_bytes()), name=name)


def check_engine(engine, trt, precision: str, record: dict) -> dict:
    """The inspector check on a deserialized engine: records its layers' data types in ``record``, and raises when
    the engine is not a ``precision`` engine (for a trusted engine without sidecar, too: its precision must still show)."""
    layers = layer_precisions(engine, trt)
    record["layer_precisions"] = layers
    problem = precision_problem(layers, precision)
    if problem and (record.get("verified", True) or layers["detailed"]):
        raise HarnessError(f"{record.get('engine', 'the engine')}: {problem}")
    if problem:
        record["unverified"] = problem
    return record
