"""``parity localize``: the first ONNX node whose output diverges from Paddle's while its inputs still agree.

Both sides compute every intermediate tensor of one clip:
- Paddle Inference runs the exported program as exported (no fusion) with an output hook, which
  sees each op's output in program order;
- ONNX Runtime runs the ONNX model with every tensor paddle2onnx named after a Paddle op made a
  graph output (ONNX Runtime keeps graph outputs through its fusions).

Tensors are matched by name (paddle2onnx's ``p2o.pd_op.<type>.<k>.0``, or a legacy program's
variable names) and shape. In topological order, each tensor's error is taken relative to its
own magnitude. At FP32 the report names the first node over the tolerance whose inputs are all
within it; at lower precisions, where every layer drifts a little, the node whose error grows
most over its inputs' (and says which of the two it reported).

TensorRT would need Polygraphy's debug-tensor marking of fused-layer outputs so that fusion is not
broken; that runs on a GPU only and is not done here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts.onnx_graph import intermediates
from ..artifacts.paddle_model import PaddleModel
from ..backends.paddle_inference import make_config
from ..native import captured_output
from ..optional import lazy
from .program import op_type, read_program

onnx = lazy("onnx")
inference = lazy("paddle.inference")

FP32_TOLERANCE = 1e-4  # relative to the tensor's largest magnitude; clean FP32 conversions stay near 1e-6


@dataclass
class Divergence:
    onnx_node: str
    onnx_op: str
    paddle_op: str
    tensor: str
    error_out: float
    error_in: float


@dataclass
class Diagnosis:
    backend: str
    against: str
    clip: str
    mode: str  # "first-divergence" (fp32) or "largest-jump" (lower precision)
    tolerance: float
    first_divergence: Divergence | None
    curve: list[dict] = field(default_factory=list)  # [{depth, tensor, onnx_op, paddle_op, error}] in topological order
    note: str = ""
    # Tensors named after a Paddle op that could not be compared: [{tensor, onnx_node, onnx_op, paddle_op, why}]
    unmatched: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# Legacy ProgramDesc op types under the names PIR (and so paddle2onnx's tensor names) give them.
LEGACY_TYPES = {
    "reshape2": "reshape", "transpose2": "transpose", "squeeze2": "squeeze", "unsqueeze2": "unsqueeze", "matmul_v2": "matmul",
    "elementwise_add": "add", "elementwise_mul": "multiply", "elementwise_sub": "subtract", "elementwise_div": "divide",
    "reduce_mean": "mean", "reduce_sum": "sum", "flatten_contiguous_range": "flatten", "fill_constant": "full", "scale": "scale",
}


def paddle_intermediates(model: PaddleModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every op output of one run, keyed by its legacy variable name and by ``type.k`` (k: that type's count)."""
    with captured_output():
        predictor = inference.create_predictor(make_config(model, 1, "native"))
    seen: dict[str, list] = {}

    def hook(op_name: str, tensor_name: str, tensor) -> None:
        seen.setdefault(op_name, []).append((tensor_name, np.array(tensor.numpy(), copy=True)))

    calls: list = []  # legacy programs: one call per output, op type only

    def hook_legacy(op_name: str, tensor_name: str, tensor) -> None:
        calls.append((op_name, tensor_name, np.array(tensor.numpy(), copy=True)))

    predictor.register_output_hook(lambda op, name, t: (hook if ":" in op else hook_legacy)(op, name, t))
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    if calls:  # a legacy program: an op's outputs come one after another and share their variable stem
        for op_name, tensor_name, array in calls:
            if ".tmp_" not in tensor_name and not tensor_name.startswith("fetch"):
                continue  # a parameter (batch norm's running mean/variance)
            stem = tensor_name.split(".tmp_")[0]
            key = f"{LEGACY_TYPES.get(op_name, op_name)}:{stem}"
            seen.setdefault(key, []).append((tensor_name, array))
    out, counters = {}, {}
    order = {key: i for i, key in enumerate(seen)}
    for key in sorted(seen, key=lambda k: int(k.rsplit(":", 1)[1]) if k.rsplit(":", 1)[1].isdigit() else order[k]):
        kind = op_type(key.rsplit(":", 1)[0])
        k = counters.get(kind, 0)
        counters[kind] = k + 1
        tensors = [(n, a) for n, a in seen[key] if a.dtype.kind == "f"]
        if not tensors:
            continue
        for name, array in tensors:
            out[name] = array
        out[f"{kind}.{k}"] = max(tensors, key=lambda t: t[1].size)[1]  # the op's output (not a mean, variance or mask)
    return out


def _paddle_key(tensor: str) -> str | None:
    """``p2o.pd_op.conv2d.4.0`` -> ``conv2d.4``."""
    if not tensor.startswith("p2o.pd_op."):
        return None
    parts = tensor[len("p2o.pd_op."):].rsplit(".", 2)
    return f"{op_type(parts[0])}.{parts[1]}" if len(parts) == 3 else None


def localize(paddle_model: PaddleModel, onnx_model, x: np.ndarray, backend: str = "onnxruntime", against: str = "paddle",
             clip: str = "", precision: str = "fp32") -> Diagnosis:
    """Localize the divergence of ``onnx_model`` (a ModelProto, or a path) from the Paddle program on the input ``x``."""
    if isinstance(onnx_model, (str, Path)):
        onnx_model = onnx.load(str(onnx_model))
    ops = read_program(paddle_model)
    labels = {name: op.label for op in ops for name in op.outputs}
    theirs = paddle_intermediates(paddle_model, x)
    nodes = list(onnx_model.graph.node)
    candidates = [o for n in nodes if n.op_type != "Constant" for o in n.output if o in theirs or _paddle_key(o) in theirs]
    ours = intermediates(onnx_model, x, candidates)
    errors, producer_of, unmatched = {}, {}, []
    wanted = set(candidates)
    for i, node in enumerate(nodes):
        for name in node.output:
            producer_of[name] = (i, node)
            ref = theirs.get(name)
            if ref is None:
                ref = theirs.get(_paddle_key(name) or "")
            got = ours.get(name)
            if ref is None or got is None or ref.shape != got.shape:
                if name in wanted:
                    why = ("ONNX Runtime did not output it" if got is None else
                           f"shapes differ: ONNX {list(got.shape)}, Paddle {list(ref.shape)}" if ref is not None else "Paddle did not output it")
                    unmatched.append({"tensor": name, "onnx_node": node.name or name, "onnx_op": node.op_type,
                                      "paddle_op": labels.get(name, ""), "why": why})
                continue
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            with np.errstate(invalid="ignore"):
                diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
            errors[name] = diff / max(scale, 1e-12) if np.isfinite(diff) else float("inf")
    curve = []
    for name in sorted(errors, key=lambda n: producer_of[n][0]):
        _, node = producer_of[name]
        curve.append({"depth": len(curve), "tensor": name, "onnx_op": node.op_type, "paddle_op": labels.get(name, ""),
                      "error": errors[name]})

    def inputs_error(name: str) -> float:
        """The largest error among the nearest matched tensors this one is computed from (0 for the graph input)."""
        worst, stack, seen = 0.0, list(producer_of[name][1].input), set()
        while stack:
            t = stack.pop()
            if t in seen or t not in producer_of:
                continue
            seen.add(t)
            if t in errors:
                worst = max(worst, errors[t])
            else:
                stack.extend(producer_of[t][1].input)
        return worst

    mode = "first-divergence" if precision == "fp32" else "largest-jump"
    tol = FP32_TOLERANCE
    chosen = None
    if mode == "first-divergence":
        for point in curve:
            if point["error"] > tol and inputs_error(point["tensor"]) <= tol:
                chosen = point
                break
    else:
        jumps = [(p["error"] - inputs_error(p["tensor"]), p) for p in curve]
        if jumps and curve[-1]["error"] > tol:
            chosen = max(jumps, key=lambda jp: jp[0])[1]
    divergence = None
    if chosen is not None:
        _, node = producer_of[chosen["tensor"]]
        divergence = Divergence(node.name or chosen["tensor"], node.op_type, chosen["paddle_op"], chosen["tensor"], chosen["error"],
                                inputs_error(chosen["tensor"]))
    note = (f"{len(curve)} tensors matched of {len(candidates)} named after Paddle ops" + _unmatched_note(unmatched)
            + ("" if mode == "first-divergence" else "; at lower precision every layer drifts: the largest error jump is reported"))
    return Diagnosis(backend, against, clip, mode, tol, divergence, curve, note, unmatched)


MAX_UNMATCHED_NAMED = 5


def _unmatched_note(unmatched: list[dict]) -> str:
    """``; not compared: Squeeze.0 (Identity, Paddle squeeze #1: shapes differ: ...)``, the first few by name."""
    if not unmatched:
        return ""
    named = [f"{u['onnx_node']} ({u['onnx_op']}{', Paddle ' + u['paddle_op'] if u['paddle_op'] else ''}: {u['why']})"
             for u in unmatched[:MAX_UNMATCHED_NAMED]]
    more = f" and {len(unmatched) - MAX_UNMATCHED_NAMED} more" if len(unmatched) > MAX_UNMATCHED_NAMED else ""
    return f"; not compared: {', '.join(named)}{more}"
