"""Backends: one Polygraphy runner per way of running the model, behind one registry.

A ``Backend`` says what it needs (``requires``), whether it can run here (``availability``)
and how to make its runner (``make_runner``). Optional packages are imported only inside
``make_runner``, so listing backends costs nothing and works on any machine.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..artifacts import ArtifactCache, PaddleModel
from ..precision.tolerance import PRECISION_RANK  # also re-exported; its home is precision/tolerance.py


@dataclass
class ModelArtifacts:
    """What a run compares: the models, their input, and where derived files are cached."""

    paddle_model: PaddleModel | None = None
    onnx: Path | None = None
    trt_engine: Path | None = None  # a prebuilt engine (--trt-engine) instead of building one
    trust_engine: bool = False  # use a --trt-engine without its sidecar (the report says it was not verified)
    cache: ArtifactCache = field(default_factory=ArtifactCache)
    threads: int | None = None
    allow_trt_fallback: bool = False  # let ORT's TensorRT EP hand nodes to CUDA
    classes: int | None = None  # the model's output size (a user's program must write this many logits)
    weights: Path | None = None  # a training checkpoint, for paddle-dygraph
    calibration: Path | None = None  # a calibration clip list, for onnxruntime-int8
    pre: object = None  # the run's PreprocessConfig (calibration clips are preprocessed the same way)
    dygraph: dict | None = None  # its model (a ModelSpec as a dict); classes, T and size from the exported model
    input_name: str = "data_batch_0"
    num_seg: int = 8
    size: int = 224
    batch: int = 1

    def input_shapes(self) -> dict:
        from .tensorrt import profile_shapes

        mn, opt, mx = profile_shapes(self.num_seg, self.size, self.batch)
        return {"min": list(mn), "opt": list(opt), "max": list(mx)}


@dataclass(frozen=True)
class Backend:
    name: str
    precision: str  # "fp32" | "fp16" | "int8": selects the tolerance
    description: str
    requires: tuple[str, ...]  # importable modules
    needs: str  # which artifact it runs: "paddle" | "onnx"
    make_runner: Callable[[ModelArtifacts], object]
    device: str = "cpu"
    probe: Callable[[], str | None] | None = None  # machine checks beyond importability
    # Run in its own process: native code that may crash the process (GPU backends always are).
    isolate: bool = False

    @property
    def chain(self) -> int:
        """Its place in the deployment chain, for the hop matrix: dygraph -> static -> optimized Paddle ->
        ONNX -> lower precision and other runtimes."""
        return CHAIN.index(self.name) if self.name in CHAIN else len(CHAIN)

    @property
    def isolated(self) -> bool:
        return self.isolate or self.device == "gpu"

    def availability(self, artifacts: ModelArtifacts | None = None) -> str | None:
        """None when it can run here, else the one-line reason it cannot."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"unavailable: {module} not importable"
        if self.probe is not None:
            reason = self.probe()
            if reason:
                return reason
        if artifacts is not None:
            if self.needs == "paddle" and artifacts.paddle_model is None:
                return "unavailable: no Paddle model given (--paddle-model)"
            if self.needs == "onnx" and artifacts.onnx is None:
                return "unavailable: no ONNX model given (--onnx)"
            if self.name.startswith("paddle-trt") and artifacts.paddle_model is not None and artifacts.paddle_model.model_file.suffix == ".json":
                return ("unavailable: Paddle 3's PIR programs (.json) never take Paddle Inference's TensorRT subgraph pass: this would "
                        "run as plain Paddle GPU under a TensorRT name; give a Paddle 2.6 .pdmodel export, or convert with paddle.tensorrt")
            if self.name.endswith("-int8") and artifacts.calibration is None:
                return "unavailable: no calibration clips given (--calibration LIST)"
            if self.needs == "weights" and artifacts.weights is None:
                return "unavailable: no training checkpoint given (--weights)"
        return None


def _paddle_cpu(art: ModelArtifacts):
    from .paddle_inference import PaddleInferenceRunner, fast_cpu_mode

    return PaddleInferenceRunner(art.paddle_model, threads=art.threads, name="paddle", mode=fast_cpu_mode(art.paddle_model, art.cache))


def _dygraph(art: ModelArtifacts):
    from .dygraph import DygraphRunner

    return DygraphRunner(art.weights, art.dygraph, name="paddle-dygraph")


def _openvino(precision: str):
    def make(art: ModelArtifacts):
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(art.onnx, precision, art.threads, name="openvino" if precision == "fp32" else f"openvino-{precision}")

    return make


def _openvino_probe(precision: str):
    def probe():
        from .openvino import precision_reason

        return precision_reason(precision)

    return probe


def _paddle_mode(mode: str, name: str):
    def make(art: ModelArtifacts):
        from .paddle_inference import PaddleInferenceRunner

        return PaddleInferenceRunner(art.paddle_model, threads=art.threads, name=name, mode=mode)

    return make


def _ort_cpu(art: ModelArtifacts):
    from .onnxrt import ort_runner

    return ort_runner(art.onnx, "onnxruntime", art.threads)


def _ort_cpu_fp16(art: ModelArtifacts):
    from ..artifacts import cached_fp16
    from .onnxrt import ort_runner

    return ort_runner(lambda: str(cached_fp16(art.onnx, art.cache)), "onnxruntime-fp16", art.threads)


def _ort_cpu_int8(art: ModelArtifacts):
    from ..precision.int8 import cached_int8
    from .onnxrt import ort_runner

    return ort_runner(lambda: str(cached_int8(art.onnx, art.calibration, art.pre, art.cache)[0]), "onnxruntime-int8", art.threads)


def _ort_gpu(art: ModelArtifacts, trt_fp16: bool | None, name: str):
    from .gpu import ort_gpu_runner

    return ort_gpu_runner(art, trt_fp16, name)


def _paddle_gpu(art: ModelArtifacts, trt_precision: str | None, name: str):
    from .gpu import paddle_gpu_runner

    return paddle_gpu_runner(art, trt_precision, name)


def _trt(precision: str):
    def make(art: ModelArtifacts):
        from .tensorrt import trt_runner

        return trt_runner(art, precision, f"tensorrt-{precision}")

    return make


def _probe(kind: str, *args):
    def probe():
        from . import gpu

        return getattr(gpu, kind)(*args)

    return probe


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "paddle-dygraph", "fp32", "the training checkpoint through the model code (Paddle dygraph, eval mode)",
            ("paddle",), "weights", _dygraph,
        ),
        Backend(
            "paddle", "fp32", "Paddle Inference, CPU, oneDNN on, IR optimization off (the conv+activation fusion left out where it crashes the model)",
            ("paddle",), "paddle", _paddle_cpu,
        ),
        Backend("paddle-native", "fp32", "Paddle Inference, CPU, oneDNN and IR optimization off (the program as exported; slow)",
                ("paddle",), "paddle", _paddle_mode("native", "paddle-native")),
        Backend(
            "paddle-onednn", "fp32", "Paddle Inference, CPU, IR optimization and oneDNN on (Paddle's deployed default)",
            ("paddle",), "paddle", _paddle_mode("onednn-ir", "paddle-onednn"), isolate=True,
        ),
        Backend("onnxruntime", "fp32", "ONNX Runtime, CPU execution provider", ("onnxruntime",), "onnx", _ort_cpu),
        Backend(
            "onnxruntime-fp16",
            "fp16",
            "ONNX Runtime, CPU, model converted to float16 (float32 I/O)",
            ("onnxruntime", "onnxconverter_common"),
            "onnx",
            _ort_cpu_fp16,
        ),
        Backend(
            "onnxruntime-int8", "int8", "ONNX Runtime, CPU, static INT8 (QDQ, per-channel weights) calibrated on --calibration",
            ("onnxruntime",), "onnx", _ort_cpu_int8,
        ),
        Backend("openvino", "fp32", "OpenVINO, CPU device, the ONNX model at f32", ("openvino",), "onnx", _openvino("fp32")),
        Backend("openvino-fp16", "fp16", "OpenVINO, CPU device, the ONNX model at f16 inference precision", ("openvino",), "onnx",
                _openvino("fp16"), probe=_openvino_probe("fp16")),
        Backend("openvino-bf16", "fp16", "OpenVINO, CPU device, the ONNX model at bf16 inference precision", ("openvino",), "onnx",
                _openvino("bf16"), probe=_openvino_probe("bf16")),
        Backend(
            "onnxruntime-cuda", "fp32", "ONNX Runtime, CUDA execution provider (TF32 off)", ("onnxruntime",), "onnx",
            lambda a: _ort_gpu(a, None, "onnxruntime-cuda"), "gpu", _probe("ort_provider_reason", "CUDAExecutionProvider"),
        ),
        Backend(
            "onnxruntime-trt-fp16", "fp16", "ONNX Runtime, TensorRT execution provider, FP16", ("onnxruntime",), "onnx",
            lambda a: _ort_gpu(a, True, "onnxruntime-trt-fp16"), "gpu", _probe("ort_provider_reason", "TensorrtExecutionProvider"),
        ),
        Backend(
            "tensorrt-fp32", "fp32", "TensorRT through Polygraphy, FP32 (TF32 off)", ("tensorrt",), "onnx",
            _trt("fp32"), "gpu", _probe("cuda_device_reason"),
        ),
        Backend(
            "tensorrt-fp16", "fp16", "TensorRT through Polygraphy, FP16", ("tensorrt",), "onnx",
            _trt("fp16"), "gpu", _probe("cuda_device_reason"),
        ),
        Backend(
            "tensorrt-int8", "int8", "TensorRT through Polygraphy, INT8 (calibrated on --calibration; QDQ on TensorRT 11)", ("tensorrt",),
            "onnx", _trt("int8"), "gpu", _probe("cuda_device_reason"),
        ),
        Backend(
            "paddle-gpu", "fp32", "Paddle Inference, GPU", ("paddle",), "paddle",
            lambda a: _paddle_gpu(a, None, "paddle-gpu"), "gpu", _probe("paddle_gpu_reason", False),
        ),
        Backend(
            "paddle-trt-fp32", "fp32", "Paddle Inference, TensorRT subgraph engine, FP32", ("paddle",), "paddle",
            lambda a: _paddle_gpu(a, "fp32", "paddle-trt-fp32"), "gpu", _probe("paddle_gpu_reason", True),
        ),
        Backend(
            "paddle-trt-fp16", "fp16", "Paddle Inference, TensorRT subgraph engine, FP16", ("paddle",), "paddle",
            lambda a: _paddle_gpu(a, "fp16", "paddle-trt-fp16"), "gpu", _probe("paddle_gpu_reason", True),
        ),
    )
}
DEFAULT_BACKENDS = ("paddle", "onnxruntime", "onnxruntime-fp16")
# The deployment chain in order: each hop is compared with the one before it (the hop matrix).
CHAIN = (
    "paddle-dygraph", "paddle-native", "paddle", "paddle-onednn", "paddle-gpu", "paddle-trt-fp32", "onnxruntime", "openvino",
    "onnxruntime-cuda", "tensorrt-fp32", "paddle-trt-fp16", "onnxruntime-fp16", "openvino-fp16", "openvino-bf16",
    "onnxruntime-trt-fp16", "tensorrt-fp16", "onnxruntime-int8", "tensorrt-int8",
)


@dataclass(frozen=True)
class Lane:
    """One backend run at one batch size, and what its logits are compared with.

    ``against`` is the reference for ordinary lanes (None for the reference itself); a
    batch-check lane (``NAME@bK``) is compared with the same backend at the run's batch size.
    """

    name: str
    backend: Backend
    batch: int = 1
    against: str | None = None
    variant: str | None = None  # another preprocessing of the same frames (preprocessing attribution)

    @property
    def description(self) -> str:
        extra = f", batch {self.batch}" if self.batch > 1 else ""
        return self.backend.description + extra + (f", on {self.variant} preprocessing" if self.variant else "")


@dataclass
class Selection:
    reference: str
    lanes: list[Lane]
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> list[Lane]:
        """The lanes the verdict judges."""
        return [lane for lane in self.lanes if lane.against is not None and lane.variant is None]

    @property
    def attributions(self) -> list[Lane]:
        """The reference on other preprocessing paths: how much preprocessing alone moves the logits."""
        return [lane for lane in self.lanes if lane.variant is not None]


def select(cfg, golden_name: str | None = None) -> Selection:
    """What a run runs, from its config: shared by ``parity run`` and the pytest plugin.

    The backends of ``cfg.backends`` plus any required ones; the live reference first (added,
    with a note, when it is not among them); with ``cfg.batch_check`` K, every backend again at
    batch K as ``NAME@bK``, compared with itself at the run's batch size.
    """
    from ..errors import HarnessError

    unknown = [n for n in cfg.require if n not in BACKENDS]
    if unknown:
        raise HarnessError(f"--require: unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    backends = resolve(cfg.backends)
    backends += [BACKENDS[n] for n in cfg.require if n not in [b.name for b in backends]]
    notes = []
    if cfg.weights and "paddle-dygraph" not in [b.name for b in backends]:
        backends.insert(0, BACKENDS["paddle-dygraph"])
        notes.append("--weights given: paddle-dygraph (the training checkpoint) runs as the first hop of the chain")
    if golden_name is not None:
        reference = golden_name
    else:
        reference = cfg.reference
        if reference not in BACKENDS:
            raise HarnessError(f"unknown reference backend {reference!r}; known: {', '.join(BACKENDS)}")
        if reference not in [b.name for b in backends]:
            backends.insert(0, BACKENDS[reference])
            notes.append(f"reference {reference} is not in --backends; it was added, to run as the reference")
        backends.sort(key=lambda b: b.name != reference)
    backends += external_backends(cfg)
    if golden_name is None and not cfg.allow_low_precision_reference:
        ref = BACKENDS[reference]
        finer = [b.name for b in backends if PRECISION_RANK.get(b.precision, 0) > PRECISION_RANK.get(ref.precision, 0)]
        if finer:
            raise HarnessError(
                f"reference {reference} is {ref.precision}, lower than {', '.join(finer)}: they would be judged against "
                f"{ref.precision} noise; pick an fp32 reference, or pass --allow-low-precision-reference"
            )
    batch = cfg.batch_size or 1
    lanes = [Lane(b.name, b, batch, None if b.name == reference else reference) for b in backends]
    if cfg.batch_check:
        if cfg.batch_check == batch:
            raise HarnessError(f"--batch-check {cfg.batch_check}: that is the run's own batch size; give another")
        lanes += [Lane(f"{b.name}@b{cfg.batch_check}", b, cfg.batch_check, b.name) for b in backends]
    variants = cfg.preprocess_variants()[1:]
    if variants and golden_name is not None:
        notes.append("preprocessing attribution needs a live reference; it is not done against golden outputs")
    elif variants:
        ref = BACKENDS[reference]
        lanes += [Lane(f"{reference}[{v}]", ref, batch, reference, v) for v in variants]
    return Selection(reference, lanes, notes)


def external_backends(cfg) -> list[Backend]:
    """A user's own programs (``--external NAME=CMD``) and saved logits (``--logits NAME=FILE``), as backends."""
    from ..errors import HarnessError

    out = []
    specs = [(n, {"kind": "command", "command": c, "timeout": cfg.external_timeout}) for n, c in cfg.external.items()]
    specs += [(n, {"kind": "file", "file": f}) for n, f in cfg.logits_files.items()]
    for name, spec in specs:
        if name in BACKENDS or not name or any(ch in name for ch in "[]@,= "):
            raise HarnessError(f"--external/--logits {name!r}: pick a name that is not a built-in backend (no [ ] @ , = or spaces)")
        precision = cfg.external_precision.get(name, "fp32")
        if precision not in ("fp32", "fp16", "int8"):
            raise HarnessError(f"--external-precision {name}={precision}: expected fp32, fp16 or int8")
        if spec["kind"] == "command":
            from .external import parse_command

            parse_command(name, spec["command"])  # refuse a bad template before anything runs
            what = f"your program: {spec['command']}"
        else:
            from ..artifacts import sha256_file
            from .external import load_logits_file

            path = Path(spec["file"])
            if not path.is_file():
                raise HarnessError(f"--logits {name}={path}: file not found")
            load_logits_file(path)  # a file that cannot be read as logits stops the run before anything runs
            what = f"saved logits: {path} (sha256 {sha256_file(path)[:16]})"

        def make(art, name=name, spec=spec):
            from .external import make_runner

            return make_runner(name, spec, art.classes)

        out.append(Backend(name, precision, what, (), "external", make))
    return out


def resolve(names: str | list[str] | None) -> list[Backend]:
    """Backend names (comma list, or ``all`` for every one available here) to backends."""
    from ..errors import HarnessError

    if names is None:
        names = list(DEFAULT_BACKENDS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:
        return [b for b in BACKENDS.values() if b.availability() is None]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise HarnessError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    return [BACKENDS[n] for n in dict.fromkeys(names)]
