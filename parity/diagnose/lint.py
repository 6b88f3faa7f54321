"""``parity lint``: what paddle2onnx must carry over, compared op by op, before a single clip runs.

Each Paddle op is matched with the ONNX nodes that implement it (the nodes between its output
tensor, which paddle2onnx names after it, and the outputs of the ops before it). Then what must
carry over is compared: activation constants, normalization epsilons, pooling geometry, the
axes of reductions, softmax and concat, dropout's inference scale, and the temporal-shift
geometry. Known converter defects are named rules. Plus ONNX strict shape inference and an ONNX
Runtime load. Findings that map one value to one value can be repaired from the Paddle program.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts.onnx_graph import constant_values, probe_shapes
from ..artifacts.ort import ort_load_error
from ..artifacts.paddle_model import PaddleModel
from ..errors import HarnessError, one_line
from ..optional import lazy
from .program import PaddleOp, read_program

onnx = lazy("onnx")

SQUEEZE_RULE = "paddle2onnx-squeeze-of-a-non-1-axis"


@dataclass
class Finding:
    rule: str
    onnx_node: str
    onnx_op: str
    paddle_op: str
    attribute: str
    paddle_value: object
    onnx_value: object
    message: str
    repairable: bool = False
    # How to set the ONNX value from the Paddle program: ("attribute", node_index, name, value),
    # ("constant", tensor_name, value) or ("identity", node_index). Not serialized.
    fix: tuple | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("fix")
        return data


def lint(paddle_model: PaddleModel, onnx_path: str | Path) -> list[Finding]:
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # DecodeError and others on a bad file
        raise HarnessError(f"{onnx_path}: not a readable ONNX model: {one_line(exc)}") from None
    return lint_model(read_program(paddle_model), model, onnx_path)


def lint_model(ops: list[PaddleOp], model, onnx_path: str | Path | None = None) -> list[Finding]:
    graph = _Graph(model)
    findings = []
    for op in ops:
        nodes = graph.subgraph(op)
        if nodes is None:
            continue
        rule = RULES.get(op.type)
        if rule is not None:
            findings += rule(op, nodes, graph)
    findings += _squeeze_defects(graph, ops)
    findings += _model_checks(model, onnx_path)
    return findings


def review(paddle_model: PaddleModel, model, fix: bool = True) -> tuple[list[str], list[dict]]:
    """The review ``convert_to_onnx`` is given: lint ``model`` against the program and, with ``fix``, set every
    one-to-one value in place. Returns the repairs and what the lint still finds."""
    ops = read_program(paddle_model)
    findings = lint_model(ops, model)
    repairs = []
    if fix and any(f.repairable for f in findings):
        repairs = repair(model, findings)
        findings = lint_model(ops, model)
    return repairs, [f.to_dict() for f in findings]


def tensor_owners(ops: list[PaddleOp], model) -> dict[str, PaddleOp]:
    """Every ONNX tensor computed for a Paddle op, with that op (the nodes between its output and the ops before)."""
    graph = _Graph(model)
    owners = {}
    for op in ops:
        for node in graph.subgraph(op) or []:
            for name in list(node.output) + [node.name]:
                owners.setdefault(name, op)
    return owners


# ----------------------------------------------------------------------------- the ONNX graph


class _Graph:
    def __init__(self, model):
        self.model = model
        self.nodes = list(model.graph.node)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.constants = constant_values(model)
        self.inputs = {i.name for i in model.graph.input}
        self._shapes = None

    def subgraph(self, op: PaddleOp) -> list | None:
        """The nodes that compute ``op``'s output, back to the outputs of other ops; None when not in the graph."""
        out = next((name for name in op.outputs if name in self.producer), None)
        if out is None:
            return None
        own = set(op.outputs)
        found, stack, seen = [], [self.producer[out]], set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            found.append(node)
            for name in node.input:
                if not name or name in self.inputs or name in self.constants:
                    continue
                if (name.startswith("p2o.") or self._is_paddle_var(name)) and name not in own:
                    continue
                if name in self.producer:
                    stack.append(self.producer[name])
        return sorted(found, key=lambda n: self.index[id(n)])

    @staticmethod
    def _is_paddle_var(name: str) -> bool:
        return ".tmp_" in name  # legacy ProgramDesc variable names (conv2d_0.tmp_0, ...)

    def name(self, node) -> str:
        return node.name or node.output[0]

    def node_index(self, node) -> int:
        return self.index[id(node)]

    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                return list(value) if isinstance(value, (list, tuple)) else value
        return default

    def const(self, name):
        value = self.constants.get(name)
        return None if value is None else value.tolist()

    def shapes(self) -> dict[str, tuple]:
        """Static shapes of every tensor, from a probe run on zeros (batch 1)."""
        if self._shapes is None:
            names = [o for n in self.nodes for o in n.output if n.op_type != "Constant"]
            self._shapes = probe_shapes(self.model, names, batch=1)
        return self._shapes

    def rank(self, tensor: str) -> int | None:
        shape = self.shapes().get(tensor)
        return None if shape is None else len(shape)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _finding(graph: _Graph, node, op: PaddleOp, rule: str, attribute: str, paddle_value, onnx_value, fix=None, what: str = "") -> Finding:
    message = (f"{graph.name(node)} ({node.op_type}) has {attribute} {onnx_value!r}, but Paddle's {op.label} has {paddle_value!r}"
               + (f": {what}" if what else ""))
    return Finding(rule, graph.name(node), node.op_type, op.label, attribute, paddle_value, onnx_value, message, fix is not None, fix)


def _by_type(nodes, *types):
    return [n for n in nodes if n.op_type in types]


def _norm_axes(axes, rank):
    if axes is None:
        return None
    # A PIR program gives an axis held by a ``full`` op (paddle.concat's) as a float: 1.0
    axes = [int(axes)] if isinstance(axes, (int, float)) else [int(a) for a in axes]
    return sorted(a % rank for a in axes) if rank else sorted(axes)


# ----------------------------------------------------------------------------- rules, one per Paddle op type


def _batch_norm(op, nodes, graph):
    out = []
    for node in _by_type(nodes, "BatchNormalization", "InstanceNormalization", "LayerNormalization"):
        eps = graph.attr(node, "epsilon", 1e-5)
        if "epsilon" in op.attrs and not _same(eps, op.attrs["epsilon"]):
            out.append(_finding(graph, node, op, "normalization-epsilon", "epsilon", op.attrs["epsilon"], eps,
                                ("attribute", graph.node_index(node), "epsilon", float(op.attrs["epsilon"]))))
    return out


def _pool2d(op, nodes, graph):
    a = op.attrs
    kind = "Max" if a.get("pooling_type") == "max" else "Average"
    out = []
    for node in _by_type(nodes, "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool"):
        if kind not in node.op_type:
            out.append(_finding(graph, node, op, "pooling-type", "pooling_type", a.get("pooling_type"), node.op_type))
            continue
        if node.op_type.startswith("Global"):
            if not (a.get("global_pooling") or (a.get("adaptive") and list(a.get("kernel_size", [])) == [1, 1])):
                out.append(_finding(graph, node, op, "pooling-geometry", "kernel_size", a.get("kernel_size"), "global"))
            continue
        if a.get("adaptive"):
            continue  # adaptive pooling to a size other than 1 becomes fixed kernels that depend on the input size
        expected = {
            "kernel_shape": list(a.get("kernel_size", [])),
            "strides": list(a.get("strides", [])),
            "pads": list(a.get("paddings", [])) * 2 if len(a.get("paddings", [])) == 2 else list(a.get("paddings", [])),
            "ceil_mode": int(bool(a.get("ceil_mode"))),
        }
        if kind == "Average":
            expected["count_include_pad"] = int(not a.get("exclusive", True))
        for name, want in expected.items():
            have = graph.attr(node, name, 0 if name in ("ceil_mode", "count_include_pad") else None)
            if have is not None and not _same(have, want):
                out.append(_finding(graph, node, op, "pooling-geometry", name, want, have, ("attribute", graph.node_index(node), name, want)))
    return out


def _activation(paddle_attr: str, onnx_type: str, onnx_attr: str, convert=lambda v: v):
    def rule(op, nodes, graph):
        out = []
        want = op.attrs.get(paddle_attr)
        if want is None:
            return out
        want = convert(want)
        for node in _by_type(nodes, onnx_type):
            have = graph.attr(node, onnx_attr)
            if have is not None and not _same(have, want):
                out.append(_finding(graph, node, op, "activation-constant", onnx_attr, want, have,
                                    ("attribute", graph.node_index(node), onnx_attr, float(want))))
        return out

    return rule


LEAKY_RELU_RULE = "paddle2onnx-lost-leaky-relu-alpha"


def _leaky_relu(op, nodes, graph):
    """A known defect: paddle2onnx 2.1 writes LeakyRelu alphas of PIR programs from uninitialized memory
    (2.2e15, 2.5e-43, -0.024 ... on PP-TSM v1, whose activations are all leaky_relu 0.01)."""
    key = "negative_slope" if "negative_slope" in op.attrs else "alpha"
    findings = _activation(key, "LeakyRelu", "alpha")(op, nodes, graph)
    for f in findings:
        f.rule = LEAKY_RELU_RULE
    return findings


def _hardsigmoid(op, nodes, graph):
    return _activation("slope", "HardSigmoid", "alpha")(op, nodes, graph) + _activation("offset", "HardSigmoid", "beta")(op, nodes, graph)


def _axis_rule(onnx_types: tuple[str, ...], onnx_attr: str, rule_name: str):
    def rule(op, nodes, graph):
        out = []
        want = op.attrs.get("axis")
        if want is None:
            return out
        for node in _by_type(nodes, *onnx_types):
            have = graph.attr(node, onnx_attr)
            if have is None and len(node.input) > 1:  # opset 13+: axes as an input
                have = graph.const(node.input[1])
            if have is None:
                continue
            rank = graph.rank(node.input[0])
            if _norm_axes(have, rank) != _norm_axes(want, rank):
                value = want if isinstance(have, int) else list(want) if isinstance(want, (list, tuple)) else [want]
                fix = ("attribute", graph.node_index(node), onnx_attr, value) if graph.attr(node, onnx_attr) is not None else None
                out.append(_finding(graph, node, op, rule_name, onnx_attr, want, have, fix, "the op works on other axes"))
        return out

    return rule


def _dropout(op, nodes, graph):
    """downgrade_in_infer multiplies by 1 - p at inference; upscale_in_train is the identity."""
    mode, p = op.attrs.get("mode", op.attrs.get("dropout_implementation")), op.attrs.get("p", op.attrs.get("dropout_prob"))
    if p is None:
        return []
    p = p[0] if isinstance(p, list) else p
    want = 1.0 - float(p) if mode in ("downgrade_in_infer", "downscale_in_infer") else 1.0
    muls = _by_type(nodes, "Mul")
    scales = [(node, name, graph.const(name)) for node in muls for name in node.input if graph.const(name) is not None]
    if not scales:
        if want != 1.0:
            node = nodes[-1]
            return [_finding(graph, node, op, "dropout-inference-scale", "scale", want, None, None, "the inference scale is missing")]
        return []
    out = []
    for node, name, value in scales:
        have = float(np.asarray(value).reshape(-1)[0])
        if not _same(have, want):
            out.append(_finding(graph, node, op, "dropout-inference-scale", "scale", want, have, ("constant", name, want)))
    return out


def _temporal_shift(op, nodes, graph):
    """Reshape to [N, T, C, H, W], pad T by one each side, take channels [0, c1) from t-1, [c1, c2) from t+1, the rest from t."""
    seg, ratio = op.attrs.get("seg_num"), op.attrs.get("shift_ratio")
    if seg is None or ratio is None:
        return []
    out = []
    reshapes = [n for n in _by_type(nodes, "Reshape") if graph.const(n.input[1]) and len(graph.const(n.input[1])) == 5]
    if not reshapes:
        return out
    shape = graph.const(reshapes[0].input[1])
    if shape[1] != seg:
        out.append(_finding(graph, reshapes[0], op, "temporal-shift-geometry", "segments", seg, shape[1]))
        return out
    channels = shape[2]
    c1, c2 = int(channels * ratio), int(2 * channels * ratio)
    found = {}
    for node in _by_type(nodes, "Slice"):
        starts, ends, axes = (graph.const(node.input[i]) if len(node.input) > i else None for i in (1, 2, 3))
        if not (starts and ends and axes) or 2 not in axes:
            continue
        ch = axes.index(2)
        t = axes.index(1) if 1 in axes else None
        found[(starts[ch], min(ends[ch], channels))] = starts[t] if t is not None else None
    for node in _by_type(nodes, "Concat"):  # the three groups join again on the channel axis of [N, T, C, H, W]
        if graph.attr(node, "axis") not in (2, -3):
            out.append(_finding(graph, node, op, "temporal-shift-geometry", "axis", 2, graph.attr(node, "axis"),
                                ("attribute", graph.node_index(node), "axis", 2), "the channel groups are joined on another axis"))
    want = {(0, c1): 0, (c1, c2): 2, (c2, channels): 1}
    if found and found != want:
        node = _by_type(nodes, "Slice")[0]
        have = {f"{a}:{b}": t for (a, b), t in sorted(found.items())}
        expected = {f"{a}:{b}": t for (a, b), t in sorted(want.items())}
        out.append(_finding(graph, node, op, "temporal-shift-geometry", "channel groups (channels: time offset)", expected, have,
                            None, f"shift ratio {ratio} of {channels} channels"))
    return out


RULES = {
    "batch_norm": _batch_norm,
    "layer_norm": _batch_norm,
    "instance_norm": _batch_norm,
    "pool2d": _pool2d,
    "leaky_relu": _leaky_relu,
    "hardsigmoid": _hardsigmoid,
    "hard_sigmoid": _hardsigmoid,
    "softmax": _axis_rule(("Softmax",), "axis", "softmax-axis"),
    "mean": _axis_rule(("ReduceMean",), "axes", "reduce-axes"),
    "reduce_mean": _axis_rule(("ReduceMean",), "axes", "reduce-axes"),
    "sum": _axis_rule(("ReduceSum",), "axes", "reduce-axes"),
    "concat": _axis_rule(("Concat",), "axis", "concat-axis"),
    "dropout": _dropout,
    "temporal_shift": _temporal_shift,
}


def _squeeze_defects(graph: _Graph, ops: list[PaddleOp]) -> list[Finding]:
    """The known paddle2onnx defect: a Squeeze of an axis that is not 1 (PP-TSMv2's LTA ``squeeze(-1)`` on [N, T])."""
    squeezes = [n for n in graph.nodes if n.op_type == "Squeeze"]
    if not squeezes:
        return []
    owner = {}
    for op in ops:
        for node in graph.subgraph(op) or []:
            owner.setdefault(id(node), op)
    out = []
    for node in squeezes:
        axes = graph.attr(node, "axes")
        if axes is None and len(node.input) > 1:
            axes = graph.const(node.input[1])
        shape = graph.shapes().get(node.input[0])
        if not axes or shape is None or all(-len(shape) <= a < len(shape) and shape[a] == 1 for a in axes):
            continue
        op = owner.get(id(node))
        label = op.label if op else "squeeze"
        out.append(Finding(
            SQUEEZE_RULE, graph.name(node), "Squeeze", label, "axes", "no-op on a dimension that is not 1", list(axes),
            f"{graph.name(node)} squeezes axes {list(axes)} of a {list(shape)} tensor: Paddle ignores that, ONNX Runtime refuses the "
            "model (known paddle2onnx defect); it becomes Identity",
            True, ("identity", graph.node_index(node)),
        ))
    return out


def _model_checks(model, onnx_path) -> list[Finding]:
    out = []
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises InferenceError and others
        out.append(Finding("onnx-strict-shape-inference", "", "", "", "", None, None, f"ONNX strict shape inference fails: {one_line(exc)}"))
    if onnx_path is not None:
        error = ort_load_error(onnx_path)
        if error:
            out.append(Finding("onnxruntime-load", "", "", "", "", None, None, f"ONNX Runtime refuses the model: {error[:300]}"))
    return out


# ----------------------------------------------------------------------------- repairs


def repair(model, findings: list[Finding]) -> list[str]:
    """Set every one-to-one value from the Paddle program; returns one line per repair. Nothing else changes."""
    lines = []
    nodes = model.graph.node
    for f in findings:
        if not f.repairable or f.fix is None:
            continue
        kind = f.fix[0]
        if kind == "attribute":
            _, index, name, value = f.fix
            node = nodes[index]
            for a in list(node.attribute):
                if a.name == name:
                    node.attribute.remove(a)
            node.attribute.append(onnx.helper.make_attribute(name, value))
            lines.append(f"set {f.onnx_node} ({f.onnx_op}) {name} to {value!r} from Paddle's {f.paddle_op} (was {f.onnx_value!r})")
        elif kind == "constant":
            _, tensor, value = f.fix
            _replace_constant(model, tensor, value)
            lines.append(f"set constant {tensor} to {value!r} from Paddle's {f.paddle_op} (was {f.onnx_value!r})")
        elif kind == "identity":
            _, index = f.fix
            node = nodes[index]
            nodes[index].CopyFrom(onnx.helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name))
            lines.append(f"replaced {f.onnx_node} (Squeeze of axes {f.onnx_value} of a dimension that is not 1) with Identity")
    return lines


def _replace_constant(model, tensor: str, value) -> None:
    for init in model.graph.initializer:
        if init.name == tensor:
            old = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(np.full_like(old, value), tensor))
            return
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == tensor:
            for a in node.attribute:
                if a.name == "value":
                    old = onnx.numpy_helper.to_array(a.t)
                    a.t.CopyFrom(onnx.numpy_helper.from_array(np.full_like(old, value), tensor))
            return
