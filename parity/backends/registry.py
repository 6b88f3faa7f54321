"""The backend registry: every backend is a plugin, the built-in ones included.

A distribution adds backends with entry points in the group ``pptsm_parity.backends``::

    [project.entry-points."pptsm_parity.backends"]
    my-runtime = "my_package.backend:BACKEND"

The contract: an entry point loads to a ``Backend``, or to a list (or tuple) of them. A ``Backend`` carries
every fact the harness needs about it (its precision, place in the chain, artifacts, TF32 handling, whether it
can be localized or advised): nothing elsewhere lists backends by name. The built-in ones are
``parity.backends.builtin:BUILTIN``, registered the same way in this project's pyproject.toml.

Entry points are loaded on first use of ``BACKENDS``, once. A plugin that fails to load, or loads to something
that is not a ``Backend``, is listed as an unavailable backend named after its entry point, with a one-line
reason. Optional packages are imported only inside ``make_runner``, so listing backends stays cheap.
"""
from __future__ import annotations

import importlib.util
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from ..artifacts import ArtifactCache, PaddleModel, sha256_file
from ..errors import HarnessError, one_line
from ..precision.tolerance import PRECISION_RANK
from .external import load_logits_file, make_runner, parse_command

GROUP = "pptsm_parity.backends"
BUILTIN = "parity.backends.builtin:BUILTIN"  # the built-in backends' entry point
LAST_HOP = 1000  # the chain position of a backend that names none (a user's program, saved logits): the last hop
DEFAULT_BACKENDS = ("paddle", "onnxruntime", "onnxruntime-fp16")


class Status(str, Enum):
    """How a backend's (or a clip's) run ended; a str, so results.json and comparisons with strings are unchanged."""

    OK = "ok"
    UNAVAILABLE = "unavailable"  # it cannot run here (a module, a device, an artifact is missing)
    ERROR = "error"  # it started and failed

    def __str__(self) -> str:
        return self.value


class LaneKind(str, Enum):
    """What a lane (and its record) is for."""

    MAIN = "main"  # a backend at the run's batch size: judged, and a hop of the chain
    VARIANT = "variant"  # the reference on another preprocessing (``NAME[variant]``): attribution only
    BATCH_CHECK = "batch_check"  # a backend at another batch size (``NAME@bK``), compared with itself
    GOLDEN = "golden"  # stored outputs standing in for the reference (``golden:NAME``)

    def __str__(self) -> str:
        return self.value


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
    # Calibrated model files by backend name, built where the calibration clips are (``Backend.calibrate``, on the Ray
    # driver for actors that cannot read them): each backend runs its own as it is instead of calibrating again
    calibrated: dict[str, Path] = field(default_factory=dict)
    pre: object = None  # the run's PreprocessConfig (calibration clips are preprocessed the same way)
    dygraph: dict | None = None  # its model (a ModelSpec as a dict); classes, T and size from the exported model
    input_name: str = "data_batch_0"
    num_seg: int = 8
    size: int = 224
    batch: int = 1
    # Another PaddleVideo helper's run (``parity.recipes``): its name, the model's inputs as the model files declare
    # them (``model_files.InputSpec``, in the model's order) and the model's output rows per clip (its views).
    # PP-TSM's runs leave them empty: one input, ``input_name`` [N, T, 3, size, size], one row per clip.
    helper: str | None = None
    inputs: tuple = ()
    views: int = 1

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's input names, in its order: what every runner's feed dict is keyed by."""
        return tuple(i.name for i in self.inputs) if self.inputs else (self.input_name,)

    def profiles(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """(min, opt, max) shapes per input name (TensorRT's optimization profile): the batch dimension from one clip's
        rows (its views) to the run's batch of clips; every other dimension as the model fixes it."""
        if not self.inputs:
            return {self.input_name: profile_shapes(self.num_seg, self.size, self.batch)}
        return {i.name: input_profile(i.name, i.dims, self.views, self.batch) for i in self.inputs}


def input_profile(name: str, dims, views: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """One input's (min, opt, max): ``views`` rows per clip, 1 to ``batch`` clips; its other dims must be fixed."""
    if batch < 1 or views < 1:
        raise ValueError(f"batch and views must be at least 1, got {batch} and {views}")
    rest = tuple(int(d) for d in dims[1:])
    if any(d <= 0 for d in rest):
        raise HarnessError(f"input {name} has dynamic dims {list(dims)}: a TensorRT profile needs them fixed (export with fixed T, H, W)")
    return (views, *rest), (views * batch, *rest), (views * batch, *rest)


def profile_shapes(num_seg: int, size: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes: batch from 1 to the run's batch size; T and size fixed."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    clip = (num_seg, 3, size, size)
    return (1, *clip), (batch, *clip), (batch, *clip)


@dataclass(frozen=True)
class Backend:
    name: str
    precision: str  # "fp32" | "fp16" | "int8": selects the tolerance
    description: str
    requires: tuple[str, ...]  # importable modules
    needs: str  # which artifact it runs: "paddle" | "onnx" | "weights" | "external"
    make_runner: Callable[[ModelArtifacts], object]
    device: str = "cpu"
    probe: Callable[[], str | None] | None = None  # machine checks beyond importability
    # Run in its own process: native code that may crash the process (GPU backends always are).
    isolate: bool = False
    # Its place in the deployment chain, for the hop matrix (lower first): dygraph -> static -> optimized Paddle ->
    # ONNX -> lower precision and other runtimes. The built-in ones are 10 apart, so a plugin can go between.
    chain: int = LAST_HOP
    tf32_off: bool = False  # its own process gets NVIDIA_TF32_OVERRIDE=0 (Paddle has no TF32 switch)
    localizable: bool = False  # its intermediates can be exposed: one side of `--localize` (Paddle program or ONNX Runtime)
    advisable: bool = False  # `--advise` can find the nodes to keep in FP32 for it
    needs_calibration: bool = False  # it runs only with calibration clips (--calibration)
    # Builds its calibrated model file from the artifacts, where the clips are (None: it calibrates inside its runner,
    # e.g. while a TensorRT engine builds); the runner then takes its entry of ``ModelArtifacts.calibrated``
    calibrate: Callable[[ModelArtifacts], Path] | None = None
    needs_legacy_program: bool = False  # it runs only a Paddle 2.x .pdmodel program (Paddle-TRT's subgraph pass)

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
            if self.needs_legacy_program and artifacts.paddle_model is not None and artifacts.paddle_model.model_file.suffix == ".json":
                return ("unavailable: Paddle 3's PIR programs (.json) never take Paddle Inference's TensorRT subgraph pass: this would "
                        "run as plain Paddle GPU under a TensorRT name; give a Paddle 2.6 .pdmodel export, or convert with paddle.tensorrt")
            if self.needs_calibration and artifacts.calibration is None:
                return "unavailable: no calibration clips given (--calibration LIST)"
            if self.needs == "weights" and artifacts.weights is None:
                return "unavailable: no training checkpoint given (--weights)"
            if artifacts.helper and (self.needs == "weights" or self.needs_calibration):
                what = "the training checkpoint's model" if self.needs == "weights" else "INT8 calibration"
                return (f"unavailable: {what} is PP-TSM's; this run's preprocessing is {artifacts.helper} "
                        "(compare its exported model instead)")
        return None


# Characters a backend name may not hold: they separate lists (``a,b``, ``NAME=CMD``) or are read by people as
# a lane's kind (``NAME@bK``, ``NAME[variant]``).
RESERVED = "[]@,= "


def _broken(name: str, reason: str) -> Backend:
    """A plugin that could not be loaded, listed as an unavailable backend with why."""

    def make(art):
        raise RuntimeError(reason)

    return Backend(name, "fp32", "a backend plugin that did not load", (), "onnx", make, probe=lambda: f"unavailable: {reason}")


def load_plugins(group: str = GROUP) -> dict[str, Backend]:
    """Every backend of the entry points in ``group``: the built-in ones first, then the others by name."""
    eps = sorted(entry_points(group=group), key=lambda ep: (ep.value != BUILTIN, ep.name))
    if not any(ep.value == BUILTIN for ep in eps):  # a source tree that was never installed: the built-in ones all the same
        from .builtin import BUILTIN as builtin  # cycle: builtin.py builds its entries from this module's Backend

        found = {b.name: b for b in builtin}
    else:
        found = {}
    for ep in eps:
        where = f"plugin {ep.name} ({ep.value})"
        try:
            loaded = ep.load()
            backends = [loaded] if isinstance(loaded, Backend) else list(loaded) if isinstance(loaded, (list, tuple)) else None
            if not backends or not all(isinstance(b, Backend) for b in backends):
                raise TypeError(f"loads to {type(loaded).__name__}, not a Backend or a list of Backends")
        except Exception as exc:  # a broken plugin is one unavailable backend, never a traceback
            backends = [_broken(ep.name, f"{where} did not load: {one_line(exc)}")]
        for b in backends:
            if b.name in found or not b.name or any(ch in b.name for ch in RESERVED):
                taken = "is taken" if b.name in found else f"may not be empty or hold any of {RESERVED!r}"
                b = _broken(f"{ep.name}:{b.name}" if b.name in found else ep.name, f"{where}: the name {b.name!r} {taken}")
            found.setdefault(b.name, b)
    return found


class Registry(MutableMapping):
    """Backends by name, from the entry points, loaded on first use (tests may swap entries with ``monkeypatch.setitem``)."""

    def __init__(self, group: str = GROUP):
        self.group, self._backends = group, None

    @property
    def _all(self) -> dict[str, Backend]:
        if self._backends is None:
            self._backends = load_plugins(self.group)
        return self._backends

    def __getitem__(self, name: str) -> Backend:
        return self._all[name]

    def __setitem__(self, name: str, backend: Backend) -> None:
        self._all[name] = backend

    def __delitem__(self, name: str) -> None:
        del self._all[name]

    def __iter__(self):
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)


BACKENDS = Registry()


def chain_position(name: str) -> int:
    """A backend's place in the chain; a name the registry does not know (a user's program) is the last hop."""
    return BACKENDS[name].chain if name in BACKENDS else LAST_HOP


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
    kind: LaneKind = LaneKind.MAIN

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
        return [lane for lane in self.lanes if lane.against is not None and lane.kind != LaneKind.VARIANT]

    @property
    def attributions(self) -> list[Lane]:
        """The reference on other preprocessing paths: how much preprocessing alone moves the logits."""
        return [lane for lane in self.lanes if lane.kind == LaneKind.VARIANT]


def select(cfg, golden_name: str | None = None) -> Selection:
    """What a run runs, from its config: shared by ``parity run`` and the pytest plugin.

    The backends of ``cfg.backends`` plus any required ones; the live reference first (added,
    with a note, when it is not among them); with ``cfg.batch_check`` K, every backend again at
    batch K as ``NAME@bK``, compared with itself at the run's batch size.
    """
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
        lanes += [Lane(f"{b.name}@b{cfg.batch_check}", b, cfg.batch_check, b.name, kind=LaneKind.BATCH_CHECK) for b in backends]
    variants = cfg.preprocess_variants()[1:]
    if variants and golden_name is not None:
        notes.append("preprocessing attribution needs a live reference; it is not done against golden outputs")
    elif variants:
        ref = BACKENDS[reference]
        lanes += [Lane(f"{reference}[{v}]", ref, batch, reference, v, LaneKind.VARIANT) for v in variants]
    return Selection(reference, lanes, notes)


def external_backends(cfg) -> list[Backend]:
    """A user's own programs (``--external NAME=CMD``) and saved logits (``--logits NAME=FILE``), as backends."""
    out = []
    specs = [(n, {"kind": "command", "command": c, "timeout": cfg.external_timeout}) for n, c in cfg.external.items()]
    specs += [(n, {"kind": "file", "file": f}) for n, f in cfg.logits_files.items()]
    for name, spec in specs:
        if name in BACKENDS or not name or any(ch in name for ch in RESERVED):
            raise HarnessError(f"--external/--logits {name!r}: pick a name that is not a built-in backend (no [ ] @ , = or spaces)")
        precision = cfg.external_precision.get(name, "fp32")
        if precision not in ("fp32", "fp16", "int8"):
            raise HarnessError(f"--external-precision {name}={precision}: expected fp32, fp16 or int8")
        if spec["kind"] == "command":
            parse_command(name, spec["command"])  # refuse a bad template before anything runs
            what = f"your program: {spec['command']}"
        else:
            path = Path(spec["file"])
            if not path.is_file():
                raise HarnessError(f"--logits {name}={path}: file not found")
            load_logits_file(path)  # a file that cannot be read as logits stops the run before anything runs
            what = f"saved logits: {path} (sha256 {sha256_file(path)[:16]})"

        def make(art, name=name, spec=spec):
            return make_runner(name, spec, art.classes, art.input_names)

        out.append(Backend(name, precision, what, (), "external", make))
    return out


def resolve(names: str | list[str] | None) -> list[Backend]:
    """Backend names (comma list, or ``all`` for every one available here) to backends."""
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
