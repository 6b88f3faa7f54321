"""The Paddle side of diagnosis: an exported program's ops with their attributes, named as paddle2onnx names them.

paddle2onnx 2.x names the ONNX tensor an op of a PIR program produces ``p2o.pd_op.<type>.<k>.0``, where
k counts that op type in program order; on a legacy ProgramDesc it keeps Paddle's variable names.
Parameters keep their Paddle names on both. That is how ops and ONNX nodes are matched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..artifacts.paddle_model import PaddleModel, load_program, static_mode
from ..errors import HarnessError, one_line


@dataclass
class PaddleOp:
    type: str  # without the "pd_op." prefix and a trailing "_" (batch_norm_ -> batch_norm)
    index: int  # among the ops of this type, in program order
    attrs: dict  # attributes, with constant operands resolved (pool2d "kernel_size", mean "axis", dropout "p", ...)
    outputs: list[str]  # the ONNX tensor names paddle2onnx gives its outputs
    params: list[str] = field(default_factory=list)  # parameter names it reads

    @property
    def label(self) -> str:
        """How a user finds it: its type, its place among its kind, its first output and parameter."""
        where = self.attrs.get("struct_name") or ""
        extra = f", {self.params[0]}" if self.params else ""
        return f"{self.type} #{self.index} {where}({self.outputs[0]}{extra})".replace("  ", " ")


def op_type(name: str) -> str:
    name = name.split(".", 1)[1] if name.startswith("pd_op.") else name
    return name[:-1] if name.endswith("_") else name


def read_program(model: PaddleModel) -> list[PaddleOp]:
    """Every op of the exported program, in order, as Paddle 3 loads it.

    A legacy ``.pdmodel`` is translated to PIR, as paddle2onnx 2.x translates it, so both formats
    get the same ``p2o.pd_op.<type>.<k>.0`` names. Only the program is read, not the parameters.
    """
    try:
        return _read_pir(model)
    except HarnessError:
        raise
    except Exception as exc:  # Paddle's loader raises many types on a bad file
        raise HarnessError(f"{model.model_file}: cannot read the program: {one_line(exc)}") from None


def _value(v):
    """PIR attribute values to plain Python."""
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return str(v)


def _read_pir(model: PaddleModel) -> list[PaddleOp]:
    with static_mode() as paddle:
        program = load_program(paddle, model)
        counters: dict[str, int] = {}
        ops, made = [], []  # made: (pir op, PaddleOp), to find what feeds each fetch
        for op in program.global_block().ops:
            raw = op.name()
            k = counters.get(raw, 0)
            counters[raw] = k + 1
            if raw == "pd_op.fetch":  # the model's output: paddle2onnx names that tensor after the fetch
                producer = op.operand_source(0).get_defining_op()
                for pir_op, mine in made:
                    if pir_op == producer:
                        mine.outputs.append(str(op.attrs().get("name")))
                continue
            if raw.startswith("builtin.") or raw == "pd_op.data":
                continue
            attrs = {a: _value(v) for a, v in op.attrs().items() if a not in ("op_callstack", "stop_gradient", "persistable", "place")}
            if attrs.get("struct_name"):
                attrs["struct_name"] = attrs["struct_name"] + " "
            params, constants = [], []
            for i in range(op.num_operands()):
                source = op.operand_source(i)
                producer = source.get_defining_op() if source is not None and source.initialized() else None
                if producer is None:
                    continue
                if producer.name() == "builtin.parameter":
                    params.append(producer.attrs().get("parameter_name"))
                elif producer.name() in ("pd_op.full_int_array", "pd_op.full"):
                    constants.append(_value(producer.attrs().get("value")))
            _constant_operands(op_type(raw), attrs, constants)
            ops.append(PaddleOp(op_type(raw), k, attrs, [f"p2o.{raw}.{k}.0"], [p for p in params if p]))
            made.append((op, ops[-1]))
        return ops


def _constant_operands(kind: str, attrs: dict, constants: list) -> None:
    """Operands that are constants in the program but attributes in ONNX, under the names the rules read."""
    if not constants:
        return
    name = {"pool2d": "kernel_size", "mean": "axis", "sum": "axis", "max": "axis", "squeeze": "axis", "unsqueeze": "axis",
            "dropout": "p", "concat": "axis", "scale": "scale", "reshape": "shape"}.get(kind)
    if name and name not in attrs:
        attrs[name] = constants[0]
