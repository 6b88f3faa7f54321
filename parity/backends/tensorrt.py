"""TensorRT backends through Polygraphy's loaders and TrtRunner.

The engine is built from the ONNX model with an optimization profile over the batch dimension
(T and size fixed by the model), FP16 on for ``tensorrt-fp16`` and TF32 off for ``tensorrt-fp32``.
Built engines and the timing cache are kept on disk; the key is the ONNX sha256, the TensorRT
version, the GPU name, the precision and the profile. Every engine gets a ``.json`` sidecar
with that key, which is how ``--trt-engine`` catches a TensorRT-version or GPU mismatch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..artifacts import ArtifactCache, sha256_file, sha256_json
from ..errors import HarnessError


def _no_autoinstall() -> None:
    # paddle2onnx 2.x turns this on process-wide; a missing module must never become a pip install.
    from polygraphy import config

    config.AUTOINSTALL_DEPS = False


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

    def key(self) -> str:
        return sha256_json(asdict(self))[:24]

    def to_dict(self) -> dict:
        return asdict(self)


def profile_shapes(num_seg: int, size: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes: batch from 1 to the run's batch size; T and size fixed."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    clip = (num_seg, 3, size, size)
    return (1, *clip), (batch, *clip), (batch, *clip)


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


def create_config(spec: EngineSpec, timing_cache: str | None = None, plan: dict | None = None, calibration=None,
                  calibration_cache: str | None = None):
    """Polygraphy's CreateConfig for ``spec`` (buildable without TensorRT; used only when called).

    ``calibration``: the calibration clips' input tensors, for an INT8 build with Polygraphy's Calibrator.
    """
    from polygraphy.backend.trt import CreateConfig, Profile

    _no_autoinstall()
    plan = plan or {"fp16": spec.precision == "fp16", "tf32": spec.tf32}
    profile = Profile().add(spec.input_name, min=spec.min_shape, opt=spec.opt_shape, max=spec.max_shape)
    calibrator = None
    if plan.get("calibrator"):
        from polygraphy.backend.trt import Calibrator

        calibrator = Calibrator([{spec.input_name: x} for x in calibration or []], cache=calibration_cache)
    return CreateConfig(fp16=plan["fp16"], tf32=plan["tf32"], int8=plan.get("int8"), calibrator=calibrator, profiles=[profile],
                        load_timing_cache=timing_cache)


def engine_spec(onnx: Path, precision: str, input_name: str, num_seg: int, size: int, batch: int = 1, calibration_sha256: str = "") -> EngineSpec:
    import tensorrt as trt

    from .gpu import gpu_names

    names = gpu_names()
    mn, opt, mx = profile_shapes(num_seg, size, batch)
    return EngineSpec(sha256_file(onnx), trt.__version__, names[0] if names else "unknown", precision, input_name, mn, opt, mx,
                      fp16_path=fp16_path(trt) if precision == "fp16" else "", int8_path=int8_path(trt) if precision == "int8" else "",
                      calibration_sha256=calibration_sha256)


def build_engine(onnx: Path, spec: EngineSpec, cache: ArtifactCache, calibration: Path | None = None, pre=None) -> Path:
    """Build (or find in the cache) the serialized engine for ``spec``; returns its path.

    FP16 on TensorRT 11 is a strongly typed network parsed from the FP16 ONNX model the harness
    already makes (the same one ``onnxruntime-fp16`` runs); the sidecar records which path ran.
    """
    import tensorrt as trt
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath

    from ..artifacts import cached_fp16

    _no_autoinstall()
    plan = build_plan(spec, trt)
    tensors = None
    if plan["onnx"] == "fp16":
        source = cached_fp16(onnx, cache)
    elif plan["onnx"] == "int8-qdq":
        from ..precision.int8 import cached_int8

        source = cached_int8(onnx, calibration, pre, cache)[0]
    else:
        source = onnx
        if plan.get("calibrator"):
            from ..precision.int8 import calibration_tensors

            tensors = calibration_tensors(calibration, pre)[0]
    timing_cache = cache.root / "trt-timing" / f"{spec.tensorrt_version}-{spec.gpu.replace(' ', '_')}.cache"
    timing_cache.parent.mkdir(parents=True, exist_ok=True)

    def build(d: Path) -> None:
        loader = EngineBytesFromNetwork(
            NetworkFromOnnxPath(str(source), strongly_typed=plan["strongly_typed"] or None),
            config=create_config(spec, str(timing_cache) if timing_cache.is_file() else None, plan, tensors, str(d / "calibration.cache")),
            save_timing_cache=str(timing_cache),
        )
        (d / "model.engine").write_bytes(loader())
        (d / "model.engine.json").write_text(json.dumps(spec.to_dict(), indent=2))

    return cache.get_or_build("trt-engine", {"key": spec.key(), **spec.to_dict()}, build) / "model.engine"


def engine_mismatch(meta: dict, precision: str, trt_version: str, gpus: tuple[str, ...]) -> str | None:
    """Why an engine described by ``meta`` (its sidecar) cannot run here, or None."""
    if meta.get("tensorrt_version") != trt_version:
        return f"built with TensorRT {meta.get('tensorrt_version')}, this machine has {trt_version}; rebuild with `parity build`"
    if gpus and meta.get("gpu") not in gpus:
        return f"built for GPU {meta.get('gpu')!r}, this machine has {', '.join(gpus)}; rebuild with `parity build`"
    if meta.get("precision") != precision:
        return f"is a {meta.get('precision')} engine, not {precision}"
    return None


def check_engine_sidecar(engine: Path, precision: str) -> dict:
    """Compare a prebuilt engine's sidecar with this machine: a mismatch is a clear error."""
    import tensorrt as trt

    from .gpu import gpu_names

    sidecar = engine.with_name(engine.name + ".json")
    if not sidecar.is_file():
        return {}
    meta = json.loads(sidecar.read_text())
    problem = engine_mismatch(meta, precision, trt.__version__, gpu_names())
    if problem:
        raise HarnessError(f"{engine}: {problem}")
    return meta


def trt_runner(art, precision: str, name: str):
    """A Polygraphy TrtRunner over a cached (or the user's prebuilt) engine.

    The engine is found (or built) lazily, when the runner activates: ``EngineFromBytes`` takes a
    callable returning the serialized engine's bytes.
    """
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    _no_autoinstall()

    def engine_path() -> Path:
        if art.trt_engine is not None:
            check_engine_sidecar(art.trt_engine, precision)
            return art.trt_engine
        calibration = ""
        if precision == "int8":
            from ..precision.int8 import calibration_key

            calibration = calibration_key(art.calibration, art.pre)
        spec = engine_spec(art.onnx, precision, art.input_name, art.num_seg, art.size, art.batch, calibration)
        return build_engine(art.onnx, spec, art.cache, art.calibration, art.pre)

    return TrtRunner(EngineFromBytes(lambda: engine_path().read_bytes()), name=name)
