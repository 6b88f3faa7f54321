"""One run configuration: defaults (defaults.toml), then a config file, then command-line flags."""
from __future__ import annotations

import math
import os
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import tomllib

from .errors import HarnessError
from .precision.tolerance import Tolerance, check_tolerance_value, default_tolerances
from .preprocess import VARIANTS

# The argument groups of `parity run`, in --help order.
GROUPS = ("inputs", "backends", "tolerances", "diagnosis", "scale", "GPU", "external programs", "output")
LINT_MODES = ("error", "warn", "off")
ARCHS = ("pptsm_v2", "pptsm_r50")


@dataclass(frozen=True)
class Flag:
    """How a RunConfig field is given on the command line; parity/cli/args.py makes the argparse argument.

    How the value parses follows the field's type: a bool is ``--x/--no-x``, ``list[str]`` a comma list, ``list[int]``
    comma-separated integers, ``dict`` a repeatable ``NAME=VALUE``, ``int``/``float`` a number.
    """

    group: str
    help: str
    name: str | None = None  # default: --field-name
    metavar: str | None = None
    choices: tuple[str, ...] | str | None = None  # the values, or "module:NAME" where the list lives (above this module)
    paths: bool = False  # NAME=FILE values resolve to absolute paths


def _opt(default=None, *, factory=None, **flag):
    """A RunConfig field with its command-line flag."""
    meta = {"flag": Flag(**flag)}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


@dataclass
class RunConfig:
    paddle_model: str | None = _opt(group="inputs", help="exported Paddle inference model: NAME.json or NAME.pdmodel (with NAME.pdiparams), "
                                    "or its prefix")
    onnx: str | None = _opt(group="inputs", help="ONNX model file")
    clips: str | None = _opt(group="inputs", help="UCF101-format list (path label) or a folder of videos")
    labels: str | None = _opt(group="inputs", help="label-name file (idx name); default: labels.txt beside the list")
    # PaddleVideo's own config (the -c file of its export_model.py and predict.py): the inference helper and its
    # parameters, the class count, a label file; --num-seg, --short-size, --target-size and --labels override it
    pv_config: str | None = _opt(group="inputs", metavar="CONFIG.yaml", help="your PaddleVideo config (what tools/predict.py takes with -c): "
                                 "its INFERENCE helper and parameters, MODEL's class count; --num-seg/--short-size/--target-size/--labels "
                                 "override it")
    backends: list[str] = _opt(factory=lambda: ["paddle", "onnxruntime", "onnxruntime-fp16"], group="backends",
                               help="comma-separated backends (default paddle,onnxruntime,onnxruntime-fp16), or 'all' (every backend available here)")
    reference: str = _opt("paddle", group="backends", help="backend the others are compared with (default paddle)")
    # backends that must run (else exit 2)
    require: list[str] = _opt(factory=list, group="backends", help="comma-separated backends that must run: unavailable ones make the run exit 2")
    # a prebuilt TensorRT engine for the tensorrt-* backend
    trt_engine: str | None = _opt(group="GPU", help="a prebuilt TensorRT engine (from `parity build`) for the tensorrt-* backend")
    # accept a --trt-engine without its sidecar (unverified, and said so)
    trust_engine: bool = _opt(False, group="GPU", help="use a --trt-engine that has no .json sidecar (its model and build cannot be verified; "
                              "the report says so)")
    # compare with stored outputs (`parity golden save`) instead of a live reference
    golden: str | None = _opt(group="backends", help="compare every backend with golden outputs (`parity golden save`) instead of a live reference")
    # the previous release's report (or golden) folder: its numbers beside this run's
    baseline: str | None = _opt(group="output", metavar="PREVIOUS", help="the previous release's report (or golden) folder: its numbers beside "
                                "this run's, in the report and the summary; a margin that more than doubled is a warning, never a failure")
    # run every backend in its own process (GPU backends always are)
    isolate: bool = _opt(False, group="scale", help="run every backend in its own process, so a native crash is that backend's error "
                         "(GPU backends always are)")
    num_seg: int | None = _opt(group="inputs", help="segments T (default: read from the model)")  # None: read from the model
    # None: target_size * 256/224 (256 for 224)
    short_size: int | None = _opt(group="inputs", help="Scale short side (default: crop size x 256/224, so 256 for 224)")
    target_size: int | None = _opt(group="inputs", help="CenterCrop size (default: read from the model)")  # None: read from the model
    # "paddlevideo" (predict.py) or "cpp" (the C++ deploy); "paddlevideo,cpp" also runs the reference on
    # the second path over the same frames (preprocessing attribution)
    preprocess: str = _opt("paddlevideo", group="inputs", help="preprocessing: paddlevideo (predict.py, default) or cpp (the C++ deploy path); "
                           "paddlevideo,cpp also runs the reference on cpp over the same frames (preprocessing attribution)")
    report: str = _opt("reports/latest", group="output", help="report folder (default reports/latest)")
    # decode processes; None: one per core, 0: decode in the main process
    workers: int | None = _opt(group="scale", help="decode processes (default: one per core; 0 decodes in the main process)")
    # how backends share the cores (parity.schedule). turns by default: on the shared 2-core machine it was measured on,
    # lanes lost every pair and auto picked them anyway (README, Performance); auto is there to measure on a quiet machine
    schedule: str = _opt("turns", group="scale", choices="parity.schedule:SCHEDULES",
                         help="how backends share the cores: turns (default: each backend in turn with every core), lanes (each in "
                              "its own process on its own cores, all at once) or auto (chosen from each backend's measured cost at "
                              "1 thread and at every core, then tried on the first clips, on runs of 50+ clips)")
    # clips per inference call (the model's batch dimension must be dynamic)
    batch_size: int = _opt(1, group="scale", help="clips per inference call (default 1; needs the model's batch dimension to be dynamic)")
    # also run every backend at this batch, compared with itself at batch_size
    batch_check: int | None = _opt(group="scale", metavar="K", help="also run every backend at batch K (as NAME@bK) and compare it with itself "
                                   "at the run's batch size")
    # folder of decoded tensors, keyed by clip hash, preprocessing and decoder
    tensor_cache: str | None = _opt(group="scale", metavar="DIR", help="keep decoded tensors here, keyed by clip hash, preprocessing and decoder")
    engine: str = _opt("local", group="scale", choices="parity.engines:ENGINES",  # the engine checks the name; this module cannot import it
                       help="local (default) or ray: decode tasks and one actor per backend on a Ray cluster")
    # an existing Ray cluster (default: $RAY_ADDRESS, else a local instance)
    ray_address: str | None = _opt(group="scale", help="the Ray cluster to join (default $RAY_ADDRESS, else a local instance)")
    # send paths, not bytes, to the Ray cluster's tasks and actors (every node sees the same files)
    ray_shared_paths: bool = _opt(False, group="scale", help="with --engine ray: send file paths, not file bytes, to the cluster "
                                  "(only where every node sees the same files; default: models and clips go through Ray's object store)")
    # seconds a backend may take per call; then it is killed (runs every backend in its own process)
    backend_timeout: float | None = _opt(group="scale", metavar="SECONDS", help="kill a backend that takes longer than this on one call "
                                         "(start-up included); runs every backend in its own process")
    # seconds one clip's decode may take (in a decode process), then it is that clip's error and its process is replaced;
    # the same as stream.DECODE_TIMEOUT, where the choice is explained (a test keeps the two equal)
    decode_timeout: float = _opt(300.0, group="scale", metavar="SECONDS", help="a clip whose decode takes longer is that clip's error and its "
                                 "decode process is replaced (default 300)")
    # let an fp16/int8 reference judge fp32 backends
    allow_low_precision_reference: bool = _opt(False, group="tolerances", help="allow an fp16/int8 reference to judge fp32 backends "
                                               "(refused by default)")
    # The training checkpoint (paddle-dygraph): its model settings default to a model_spec.json beside
    # it, then to PP-TSMv2's; classes, T and size always come from the exported model.
    weights: str | None = _opt(group="backends", help="a training checkpoint (.pdparams, any PaddleVideo form): runs as paddle-dygraph, "
                               "the chain's first hop")
    arch: str | None = _opt(group="backends", choices=ARCHS, help="the checkpoint's model (default: model_spec.json beside it, else pptsm_v2)")
    temporal_attention: bool | None = _opt(group="backends", help="PP-TSMv2 with LTA (GlobalAttention)")
    scale: float | None = _opt(group="backends", help="PP-TSMv2 width multiplier of the checkpoint's model")
    depths: list[int] | None = _opt(group="backends", help="PP-TSMv2 blocks per stage of the checkpoint's model, e.g. 2,2,6,2")
    class_expand: int | None = _opt(group="backends", help="PP-TSMv2 last conv width of the checkpoint's model")
    # clip list the onnxruntime-int8 backend is calibrated on
    calibration: str | None = _opt(group="backends", metavar="LIST", help="clips to calibrate the onnxruntime-int8 backend on "
                                   "(keep them apart from --clips)")
    # A user's own programs and saved logits, as backends: NAME -> command template / logits file.
    external: dict[str, str] = _opt(factory=dict, group="external programs", metavar="NAME=CMD", help="your own program as a backend, run per "
                                    "clip: CMD takes {video} or {tensor}, and writes {out} (batch form: {list} or {tensor_list} with {out_dir}); "
                                    "repeatable")
    logits_files: dict[str, str] = _opt(factory=dict, group="external programs", name="--logits", metavar="NAME=FILE", paths=True,
                                        help="logits a device produced elsewhere, as a backend: .npz keyed by clip path or name, "
                                        "or CSV (clip, logits...)")
    external_precision: dict[str, str] = _opt(factory=dict, group="external programs", metavar="NAME=fp32|fp16|int8",
                                              help="the tolerance of NAME (default fp32)")
    external_timeout: float = _opt(600.0, group="external programs", help="seconds one call of a program may take (default 600)")
    # lint the models before running: "error" (findings fail the verdict), "warn" or "off"
    lint: str = _opt("error", group="diagnosis", choices=LINT_MODES, help="lint the ONNX model against the Paddle program first: "
                     "error (default; findings fail the verdict), warn, off")
    # on a failing ONNX Runtime pair, find the first diverging node
    localize: bool = _opt(False, group="diagnosis", help="on a failing ONNX Runtime pair, name the first diverging node and its Paddle op "
                          "(results.json diagnosis)")
    # on a failing FP16/INT8 ONNX Runtime pair, find the nodes to keep in FP32
    advise: bool = _opt(False, group="diagnosis", help="on a failing onnxruntime-fp16/-int8 pair, find the nodes to keep in FP32 "
                        "(results.json advice)")
    # let ONNX Runtime's TensorRT EP hand nodes it rejects to CUDA
    allow_trt_fallback: bool = _opt(False, group="GPU", help="let ONNX Runtime's TensorRT EP hand nodes it rejects to CUDA "
                                    "(refused by default: not a TensorRT result)")
    # Set with --tol, or [tolerance.*] tables in a config file.
    tolerances: dict[str, Tolerance] = field(default_factory=default_tolerances)
    # Per-backend overrides of single fields, e.g. {"onnxruntime-fp16": {"atol": 0.1}}.
    backend_tolerances: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args, backends: Collection[str] | None = None) -> RunConfig:
        """The config file (``--config``), then every flag given over it (the flags come from the fields' ``Flag``).
        ``backends``: the names a tolerance scope may take (the registry's; see ``tolerance_scopes``)."""
        cfg = load_config_file(args.config, backends) if getattr(args, "config", None) else cls()
        for f in fields(cls):
            if "flag" in f.metadata:
                _apply_flag(cfg, f, getattr(args, _dest(f), None))
        if getattr(args, "inputs", None):
            if args.clips:
                raise HarnessError("--inputs and --clips: give one of them")
            cfg.clips = args.inputs
        apply_tolerance_overrides(cfg, getattr(args, "tol", None) or [], backends=backends)
        return cfg

    def preprocess_variants(self) -> list[str]:
        return [v.strip() for v in self.preprocess.split(",") if v.strip()]

    def validate(self, backends: Collection[str] | None = None) -> None:
        """Every value a run uses, checked once, wherever it came from (flags, parity.toml, [tool.parity])."""
        for scope, tol in self.tolerances.items():
            for name, value in tol.to_dict().items():
                check_tolerance_value(name, value, f"tolerance {scope}")
        for scope, values in self.backend_tolerances.items():
            _check_scope(scope, "tolerance", backends, [*self.external, *self.logits_files])
            for name, value in values.items():
                if name not in _TOL_FIELDS:
                    raise HarnessError(f"tolerance {scope}: unknown field {name!r}; fields: {', '.join(sorted(_TOL_FIELDS))}")
                check_tolerance_value(name, value, f"tolerance {scope}")
        for name, low in (("workers", 0), ("batch_size", 1), ("batch_check", 2), ("backend_timeout", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low):
                raise HarnessError(f"{name.replace('_', '-')} must be a finite number of at least {low}, not {value!r}")
        for name in ("external_timeout", "decode_timeout"):
            timeout = getattr(self, name)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
                raise HarnessError(f"{name.replace('_', '-')} must be a finite number of seconds above 0, not {timeout!r}")
        both = sorted(set(self.external) & set(self.logits_files))
        if both:
            raise HarnessError(f"{both[0]!r} names both a program (--external) and a logits file (--logits); give each its own name")
        undefined = sorted(set(self.external_precision) - set(self.external) - set(self.logits_files))
        if undefined:
            raise HarnessError(f"external-precision {undefined[0]!r}: no --external or --logits of that name")
        variants = self.preprocess_variants()
        if not variants or any(v not in VARIANTS for v in variants) or len(set(variants)) != len(variants):
            raise HarnessError(f"preprocess {self.preprocess!r}: give one or more of {', '.join(VARIANTS)}, comma-separated, each once")
        if self.lint not in LINT_MODES:
            raise HarnessError(f"lint must be error, warn or off, not {self.lint!r}")

    def tolerance_for(self, name: str, precision: str, backend: str | None = None) -> Tolerance:
        """The precision's tolerance, with the overrides of the backend, then of the lane (``NAME@bK``)."""
        base = self.tolerances.get(precision) or self.tolerances["fp32"]
        overrides = {**self.backend_tolerances.get(backend or name, {}), **self.backend_tolerances.get(name, {})}
        return replace(base, **overrides)


_TOL_FIELDS = {f.name for f in fields(Tolerance)}


def flag_name(f) -> str:
    """The command-line flag of RunConfig field ``f``."""
    return f.metadata["flag"].name or "--" + f.name.replace("_", "-")


def _dest(f) -> str:
    return flag_name(f)[2:].replace("-", "_")


def _apply_flag(cfg: RunConfig, f, value) -> None:
    """One flag's value onto ``cfg``, parsed as the field's type says; a flag not given leaves the config's value."""
    kind, flag = str(f.type).replace(" | None", ""), flag_name(f)
    if kind == "list[str]":
        if value:
            setattr(cfg, f.name, [b.strip() for b in value.split(",") if b.strip()])
    elif kind == "list[int]":
        if value:
            try:
                setattr(cfg, f.name, [int(d) for d in value.split(",")])
            except ValueError:
                raise HarnessError(f"{flag} {value!r}: expected integers like 2,2,6,2") from None
    elif kind.startswith("dict"):
        given = set()
        for item in value or []:
            name, sep, text = item.partition("=")
            name, text = name.strip(), text.strip()
            if not sep or not name or not text:
                raise HarnessError(f"{flag} {item!r}: expected NAME=VALUE")
            if name in given:
                raise HarnessError(f"{flag} {name!r} is given twice; give each its own name")
            given.add(name)
            getattr(cfg, f.name)[name] = str(Path(text).resolve()) if f.metadata["flag"].paths else text
    elif value is not None:
        setattr(cfg, f.name, value)
PATH_SETTINGS = ("paddle_model", "onnx", "clips", "labels", "pv_config", "report", "trt_engine", "golden", "baseline", "tensor_cache", "weights", "calibration")


def tolerance_scopes(backends: Collection[str]) -> list[str]:
    """What a tolerance can be set for: a precision, or one of ``backends`` (``NAME@bK`` for a batch-check lane).
    The registry sits above this module, so its callers pass its names."""
    return [*default_tolerances(), *backends]


def _check_scope(scope: str, where: str, backends: Collection[str] | None, extra=()) -> None:
    """``backends`` None: no registry at hand (a caller below it), so any scope is let through here."""
    if backends is None:
        return
    base = scope.split("@b", 1)[0] if "@b" in scope and scope.rsplit("@b", 1)[1].isdigit() else scope
    known = [*tolerance_scopes(backends), *extra]
    if base not in known:
        raise HarnessError(f"{where}: unknown scope {scope!r}; known: {', '.join(known)} (or BACKEND@bK)")


def apply_tolerance_overrides(cfg: RunConfig, items: list[str], where: str = "--tol", backends: Collection[str] | None = None) -> None:
    """Apply ``--tol`` items: ``PRECISION.FIELD=VALUE`` or ``BACKEND.FIELD=VALUE``. Typos are errors."""
    for item in items:
        try:
            key, value = item.split("=", 1)
            scope, name = key.rsplit(".", 1)
        except ValueError:
            raise HarnessError(f"{where} {item!r}: expected SCOPE.FIELD=NUMBER, e.g. fp16.atol=0.05") from None
        _set_tolerance(cfg, scope, name, value, f"{where} {item!r}", backends)


def _set_tolerance(cfg: RunConfig, scope: str, name: str, value, where: str, backends: Collection[str] | None) -> None:
    """One tolerance field of a precision or a backend, checked: a typo or a bad value is an error naming ``where``."""
    if name not in _TOL_FIELDS:
        raise HarnessError(f"{where}: unknown field {name!r}; fields: {', '.join(sorted(_TOL_FIELDS))}")
    _check_scope(scope, where, backends, [*cfg.external, *cfg.logits_files])
    number = check_tolerance_value(name, value, where)
    if scope in cfg.tolerances:
        cfg.tolerances[scope] = replace(cfg.tolerances[scope], **{name: number})
    else:
        cfg.backend_tolerances.setdefault(scope, {})[name] = number


def load_config_file(path: str | Path, backends: Collection[str] | None = None) -> RunConfig:
    """Read ``parity.toml`` (top level) or a ``pyproject.toml``'s ``[tool.parity]`` table.

    The file is checked against ``config_schema()`` (a JSON Schema validator, as strict as the flags:
    no strings for numbers, no unknown keys), then each tolerance's range. Relative paths in the file
    resolve against the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not a TOML config file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool")
        if isinstance(tool, dict) and "parity" in tool and not isinstance(tool["parity"], dict):
            raise HarnessError(f"{path}: tool.parity must be a table ([tool.parity]), not {tool['parity']!r}")
        if not isinstance(tool, dict) or not isinstance(tool.get("parity"), dict):
            others = ", ".join(f"[tool.{k}]" for k in (tool or {})) if isinstance(tool, dict) else ""
            raise HarnessError(f"{path}: no [tool.parity] table" + (f" (it has {others})" if others else ""))
        data = tool["parity"]
    _validate_file(path, data)
    cfg = RunConfig()
    for table in ("external", "logits_files", "external_precision"):
        values = data.pop(table, {})
        if table == "logits_files":
            values = {k: v if Path(v).is_absolute() else str((path.parent / v).resolve()) for k, v in values.items()}
        setattr(cfg, table, values)
    for tol_scope, values in data.pop("tolerance", {}).items():
        for name, value in values.items():
            _set_tolerance(cfg, tol_scope, name, value, f"{path}: [tolerance.{tol_scope}]", backends)
    for key, value in data.items():
        if key in PATH_SETTINGS and value is not None:
            value = str((path.parent / value).resolve()) if not Path(value).is_absolute() else value
        setattr(cfg, key, value)
    return cfg


def _json_type(annotation: str) -> dict:
    """A RunConfig field's annotation (a string, under ``from __future__ import annotations``) as JSON Schema."""
    nullable = "None" in annotation
    base = annotation.replace(" | None", "")
    if base == "list[int]":
        schema = {"type": "array", "items": {"type": "integer"}}
    elif base.startswith("list"):
        schema = {"type": "array", "items": {"type": "string"}}
    elif base.startswith("dict"):
        schema = {"type": "object", "additionalProperties": {"type": "string"}}
    else:
        schema = {"type": {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}[base]}
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


def config_schema() -> dict:
    """The JSON Schema of a config file's table, from RunConfig's fields."""
    props = {f.name: _json_type(str(f.type)) for f in fields(RunConfig) if f.name not in ("tolerances", "backend_tolerances")}
    number = {"type": "number"}  # TOML's integers and floats; never a string or a boolean
    props["tolerance"] = {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": number}}
    return {"type": "object", "properties": props, "additionalProperties": False}


_WANT = {"number": "a number", "integer": "an integer", "boolean": "true or false", "string": "a string", "array": "a list", "object": "a table"}


def _validate_file(path: Path, data: dict) -> None:
    """Unknown keys and values of the wrong type are one-line errors naming the key."""
    import jsonschema

    schema = config_schema()
    known = sorted(schema["properties"])
    for key in data:
        if key not in known:
            raise HarnessError(f"{path}: unknown setting {key!r}; known: {', '.join(known)}")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "the file"
    expected = error.validator_value if error.validator == "type" else None
    if error.validator == "anyOf":
        expected = next((s.get("type") for s in error.validator_value if s.get("type") != "null"), None)
    reason = f"must be {_WANT.get(expected, expected)}" if isinstance(expected, str) else error.message
    raise HarnessError(f"{path}: {where} {reason}, not {error.instance!r}")


def config_to_dict(cfg: RunConfig) -> dict:
    """The whole configuration as plain JSON data (saved in results.json; ``parity merge`` reads it back)."""
    data = asdict(cfg)
    data["tolerances"] = {scope: tol.to_dict() for scope, tol in cfg.tolerances.items()}
    return data


# Settings that cannot change a verdict: where things are written, how the work is spread, diagnostics
# that run after the verdict. Every other setting is part of the judging configuration.
NOT_JUDGING = ("report", "labels", "workers", "schedule", "tensor_cache", "engine", "ray_address", "ray_shared_paths", "localize", "advise", "baseline")


def judging_settings(cfg: RunConfig) -> dict:
    """Every setting that can change a verdict, as plain data. Paths are left out: what they hold is
    compared by content hash instead (the run's ``artifacts`` record), so the same files at another
    path are the same judge."""
    data = config_to_dict(cfg)
    return {k: v for k, v in data.items() if k not in NOT_JUDGING and k not in PATH_SETTINGS and k != "logits_files"}


def config_from_dict(data: dict) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in data.items() if k in known and k != "tolerances"})
    cfg.tolerances = {scope: Tolerance(**vals) for scope, vals in data.get("tolerances", {}).items()} or default_tolerances()
    return cfg


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _portable(value: str, base: Path | None, only_below: bool = False) -> str:
    """A path relative to ``base`` (with ``..`` where needed), so the config travels with its tree; absolute without a
    base, or (``only_below``) when it is not below the base."""
    path = Path(value).resolve()
    if base is None or only_below and not path.is_relative_to(base.resolve()):
        return str(path)
    return os.path.relpath(path, base.resolve())


def dump_config(cfg: RunConfig, base: Path | None = None, only_below: bool = False) -> str:
    """``cfg`` as parity.toml text, readable by ``load_config_file``: paths relative to ``base`` (the config's folder),
    or absolute when ``base`` is None; with ``only_below``, paths outside ``base`` stay absolute (a bundle that moves
    alone, like the repro bundle, still finds the models it was made from)."""
    lines = ["# pptsm-parity run configuration (parity run --write-config); see README 'Config file'."]
    tables = []
    for f in fields(RunConfig):
        if f.name in ("tolerances", "backend_tolerances"):
            continue
        if f.name in ("external", "logits_files", "external_precision"):
            if getattr(cfg, f.name):
                tables.append(f"\n[{f.name}]")
                tables += [f'"{k}" = {_toml_value(_portable(v, base, only_below) if f.name == "logits_files" else v)}'
                           for k, v in getattr(cfg, f.name).items()]
            continue
        value = getattr(cfg, f.name)
        if value is None:
            continue
        if f.name in PATH_SETTINGS:
            value = _portable(value, base, only_below)
        lines.append(f"{f.name} = {_toml_value(value)}")
    lines += tables
    for scope, tol in cfg.tolerances.items():
        lines.append(f"\n[tolerance.{scope}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in tol.to_dict().items()]
    for scope, values in cfg.backend_tolerances.items():
        lines.append(f'\n[tolerance."{scope}"]')
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
