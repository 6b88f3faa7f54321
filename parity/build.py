"""Building the artifacts: export -> ONNX (paddle2onnx) -> FP16 ONNX, with a content-hash disk cache.

Each step is a function from input files to output files. ``ArtifactCache`` keys every step
by the sha256 of its inputs (file contents and settings), so nothing is rebuilt that has not
changed. Training lives in ``parity.train``; TensorRT engines are built by their backend.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import HarnessError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def default_cache_dir() -> Path:
    env = os.environ.get("PARITY_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pptsm-parity"


class ArtifactCache:
    """A folder per (stage, key). A build writes to a temp folder that is renamed on success."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def get_or_build(self, stage: str, key_inputs: dict, build: Callable[[Path], None]) -> Path:
        key = sha256_json({"stage": stage, **key_inputs})[:20]
        final = self.root / stage / key
        if (final / ".complete").is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
        try:
            build(tmp)
            (tmp / ".complete").write_text(json.dumps(key_inputs, sort_keys=True, default=str))
            if final.exists() and not (final / ".complete").is_file():
                shutil.rmtree(final, ignore_errors=True)  # a build that died half-way
            try:
                tmp.rename(final)
            except OSError:
                # Another process finished the same build first: keep its result, drop ours.
                if not (final / ".complete").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final


# ----------------------------------------------------------------------------- Paddle models


@dataclass(frozen=True)
class PaddleModel:
    """An exported Paddle inference model: ``.json`` (PIR) or ``.pdmodel`` (legacy) + ``.pdiparams``."""

    model_file: Path
    params_file: Path

    @classmethod
    def locate(cls, path: str | Path) -> "PaddleModel":
        """Accept a model file, a path prefix, or a folder holding one model."""
        p = Path(path)
        candidates: list[Path] = []
        if p.is_dir():
            candidates = sorted(p.glob("*.json")) + sorted(p.glob("*.pdmodel"))
            candidates = [c for c in candidates if c.with_suffix(".pdiparams").is_file()]
        elif p.suffix in (".json", ".pdmodel") and p.is_file():
            candidates = [p]
        elif p.suffix == ".pdiparams":
            candidates = [c for c in (p.with_suffix(".json"), p.with_suffix(".pdmodel")) if c.is_file()]
        else:
            candidates = [c for c in (Path(f"{p}.json"), Path(f"{p}.pdmodel")) if c.is_file()]
        if not candidates:
            raise HarnessError(f"{path}: no Paddle inference model found (need NAME.json or NAME.pdmodel with NAME.pdiparams)")
        model = candidates[0]
        params = model.with_suffix(".pdiparams")
        if not params.is_file():
            raise HarnessError(f"{model}: its parameters file {params.name} is missing")
        return cls(model, params)

    @property
    def prefix(self) -> Path:
        return self.model_file.with_suffix("")

    @property
    def format(self) -> str:
        return "pir-json (Paddle 3)" if self.model_file.suffix == ".json" else "pdmodel (Paddle 2 program)"

    def inputs(self) -> list[tuple[str, list[int]]]:
        """The model's feed inputs as (name, shape), read from the model file itself."""
        try:
            if self.model_file.suffix == ".json":
                return _pir_json_inputs(json.loads(self.model_file.read_text()))
            return _program_desc_inputs(self.model_file.read_bytes())
        except (ValueError, KeyError, TypeError, ImportError) as exc:
            raise HarnessError(f"{self.model_file}: cannot read the model's inputs: {exc}") from None


def _pir_json_inputs(doc) -> list[tuple[str, list[int]]]:
    """Walk a PIR program (JSON) for its ``data`` ops and their name/shape attributes."""
    found = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get("#", "")).endswith(".data") and isinstance(node.get("A"), list):
                attrs = {a.get("N"): a.get("AT", {}).get("D") for a in node["A"] if isinstance(a, dict)}
                if "name" in attrs and "shape" in attrs:
                    found.append((attrs["name"], [int(d) for d in attrs["shape"]]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    if not found:
        raise ValueError("no data op found")
    return sorted(found)


def _program_desc_inputs(blob: bytes) -> list[tuple[str, list[int]]]:
    """Read the feed targets of a legacy ProgramDesc (``.pdmodel``) and their shapes."""
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(blob)
    block = program.blocks[0]
    names = [arg for op in block.ops if op.type == "feed" for out in op.outputs for arg in out.arguments]
    shapes = {}
    for var in block.vars:
        tensor_type = var.type
        for field_name in ("lod_tensor", "dense_tensor"):
            if tensor_type.HasField(field_name) if field_name in tensor_type.DESCRIPTOR.fields_by_name else False:
                shapes[var.name] = list(getattr(tensor_type, field_name).tensor.dims)
    if not names:
        raise ValueError("no feed op found")
    return sorted((n, shapes.get(n, [])) for n in names)


def export_inference_model(model, num_seg: int, size: int, out_prefix: str | Path) -> PaddleModel:
    """Export the way PaddleVideo's export_model.py does: rep() applied, input ``data_batch_0``
    of shape ``[None, T, 3, size, size]``, logits out."""
    import paddle

    model.eval()
    if hasattr(model, "rep"):
        model.rep()
    spec = [paddle.static.InputSpec([None, num_seg, 3, size, size], "float32", name="data_batch_0")]
    try:
        static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    except TypeError:  # Paddle 2.x has no full_graph: it always traces the whole graph
        static = paddle.jit.to_static(model, input_spec=spec)
    Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(static, str(out_prefix))
    return PaddleModel.locate(out_prefix)


# ----------------------------------------------------------------------------- ONNX


@dataclass
class ConversionRecord:
    """What ``convert_to_onnx`` did, saved beside the ONNX file as ``NAME.conversion.json``."""

    source: str
    onnx: str
    opset: int
    paddle2onnx_version: str
    repairs: list[str] = field(default_factory=list)
    checker: str = "passed"
    ort_session: str = "opened"

    def to_dict(self) -> dict:
        return asdict(self)


_CONVERT_SCRIPT = """
import sys
import polygraphy.config  # imported first: paddle2onnx's POLYGRAPHY_AUTOINSTALL_DEPS=1 then has no effect
polygraphy.config.AUTOINSTALL_DEPS = False
import paddle2onnx
paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], opset_version=int(sys.argv[4]),
                   enable_onnx_checker=True, verbose=False)
"""


def convert_to_onnx(paddle_model: PaddleModel, out: str | Path, opset: int = 11, repair: bool = True) -> ConversionRecord:
    """Convert with paddle2onnx, repair known defects, then validate (ONNX checker + an ORT session).

    paddle2onnx runs in a subprocess: its ``export`` sets POLYGRAPHY_AUTOINSTALL_DEPS=1 for the
    rest of the process, which would make its own constant folding (and any later Polygraphy
    call) pip-install what is missing at run time. The subprocess imports Polygraphy first with
    auto-install off; what the folding needs (onnx-graphsurgeon, sympy) is a dependency of ours.
    """
    import onnx
    import paddle2onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "POLYGRAPHY_AUTOINSTALL_DEPS"}
    proc = subprocess.run(
        [sys.executable, "-c", _CONVERT_SCRIPT, str(paddle_model.model_file), str(paddle_model.params_file), str(out), str(opset)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0 or not out.is_file():
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise HarnessError(f"{paddle_model.model_file}: paddle2onnx failed: {tail[-1] if tail else 'no output'}")
    model = onnx.load(str(out))
    record = ConversionRecord(
        source=str(paddle_model.model_file),
        onnx=str(out),
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset),
        paddle2onnx_version=paddle2onnx.__version__,
    )
    if repair:
        record.repairs = repair_squeeze_non_unit_axes(model)
        if record.repairs:
            onnx.save(model, str(out))
    onnx.checker.check_model(str(out))
    error = ort_load_error(out)
    if error:
        record.ort_session = f"refused: {error}"
        raise HarnessError(f"{out}: ONNX Runtime refuses the converted model: {error}")
    out.with_suffix(".conversion.json").write_text(json.dumps(record.to_dict(), indent=2))
    return record


def repair_squeeze_non_unit_axes(model) -> list[str]:
    """Replace every Squeeze whose axes select a dimension that is not 1 by Identity.

    paddle2onnx turns PaddleVideo's no-op ``squeeze(-1)`` on ``[N, T]`` (in PP-TSMv2's temporal
    attention) into ``Squeeze(axes=[1])``; Paddle ignores it but ONNX Runtime refuses the model.
    Static shape inference loses the rank there, so the real shapes are probed by running a copy
    of the graph (with every Squeeze made Identity) in ONNX Runtime on a zero input.
    Returns one line per repaired node.
    """
    from onnx import helper

    squeezes = [(i, n) for i, n in enumerate(model.graph.node) if n.op_type == "Squeeze"]
    if not squeezes:
        return []
    shapes = _probe_shapes(model, [n.input[0] for _, n in squeezes])
    constants = _constant_values(model)
    repairs = []
    for idx, node in squeezes:
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            axes = [int(v) for v in constants[node.input[1]].reshape(-1)]
        shape = shapes.get(node.input[0])
        if not axes or shape is None:
            continue
        if all(-len(shape) <= a < len(shape) and shape[a] == 1 for a in axes):
            continue
        identity = helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name or f"repaired_squeeze_{idx}")
        model.graph.node.remove(node)
        model.graph.node.insert(idx, identity)
        repairs.append(
            f"replaced Squeeze '{node.name}' (axes={axes} of a {list(shape)} tensor; "
            "ONNX Runtime rejects squeezing a dimension that is not 1) with Identity"
        )
    return repairs


def _constant_values(model) -> dict:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values


def _probe_shapes(model, names: list[str], batch: int = 2) -> dict[str, tuple[int, ...]]:
    """Run a Squeeze-free copy of ``model`` on zeros and return the shapes of ``names``."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for i, node in enumerate(probe.graph.node):
        if node.op_type == "Squeeze":
            probe.graph.node[i].CopyFrom(helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name))
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    feed = {}
    init_names = {i.name for i in probe.graph.initializer}
    for inp in probe.graph.input:
        if inp.name in init_names:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        feed[inp.name] = np.zeros(dims, dtype=helper.tensor_dtype_to_np_dtype(tt.elem_type))
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        outs = sess.run(names, feed)
    except Exception:  # the probe is best effort: without shapes nothing is repaired
        return {}
    return {n: tuple(o.shape) for n, o in zip(names, outs)}


def ort_load_error(onnx_path: str | Path) -> str | None:
    """The one-line reason ONNX Runtime refuses a model, or None when a session opens."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several exception types for invalid graphs
        return " ".join(str(exc).split())
    return None


def convert_to_fp16(onnx_path: str | Path, out: str | Path) -> Path:
    """Float16 weights and activations, float32 inputs and outputs (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(onnx_path))
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(fp16, str(out))
    return out


def cached_fp16(onnx_path: str | Path, cache: ArtifactCache) -> Path:
    """The FP16 model of ``onnx_path``, built once per content hash."""
    src = Path(onnx_path)
    folder = cache.get_or_build(
        "fp16-onnx",
        {"onnx_sha256": sha256_file(src), "tool": "onnxconverter_common.float16", "keep_io_types": True},
        lambda d: convert_to_fp16(src, d / "model.fp16.onnx"),
    )
    return folder / "model.fp16.onnx"
