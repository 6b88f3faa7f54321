"""Exported Paddle inference models: locating them, reading their input and program, and exporting one."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import HarnessError
from ..optional import lazy

paddle = lazy("paddle")
framework_pb2 = lazy("paddle.base.proto.framework_pb2")


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
    """Walk a PIR program (JSON) for its ``data`` ops and their name/shape attributes, in the program's order (the
    export's input order: SlowFast's slow_input before fast_input, as the helper's arrays come)."""
    found = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get("#", "")).endswith(".data") and isinstance(node.get("A"), list):
                attrs = {a.get("N"): a.get("AT", {}).get("D") for a in node["A"] if isinstance(a, dict)}
                if "name" in attrs and "shape" in attrs:
                    found.append((attrs["name"], [int(d) for d in attrs["shape"]]))
            stack.extend(reversed(list(node.values())))  # a stack: pushed reversed, so popped in document order
        elif isinstance(node, list):
            stack.extend(reversed(node))
    if not found:
        raise ValueError("no data op found")
    return found


def _program_desc_inputs(blob: bytes) -> list[tuple[str, list[int]]]:
    """Read the feed targets of a legacy ProgramDesc (``.pdmodel``) and their shapes."""
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


@contextlib.contextmanager
def static_mode():
    """Paddle in static mode for the block (dynamic again after, if it was)."""
    was_dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    try:
        yield paddle
    finally:
        if was_dynamic:
            paddle.disable_static()


def load_program(paddle, model: PaddleModel):
    """The PIR program of an exported model, without its parameters (a legacy one translated); in ``static_mode``."""
    if model.model_file.suffix == ".pdmodel":
        return paddle.pir.translate_to_pir(paddle.base.core.ProgramDesc(model.model_file.read_bytes()))
    program = paddle.static.Program()
    paddle.base.core.deserialize_pir_program(str(model.model_file), program)
    return program


def output_classes(model: PaddleModel) -> int | None:
    """The last dimension of the model's output, read from the program."""
    with static_mode() as paddle:
        program = load_program(paddle, model)  # held: its ops die with it (a temporary here segfaulted on reading a shape)
        for op in program.global_block().ops:
            if op.name() == "pd_op.fetch":
                shape = op.operand_source(0).shape
                return shape[-1] if shape and shape[-1] > 0 else None
    return None


def export_inference_model(model, num_seg: int, size: int, out_prefix: str | Path) -> PaddleModel:
    """Export the way PaddleVideo's export_model.py does: rep() applied, input ``data_batch_0``
    of shape ``[None, T, 3, size, size]``, logits out."""
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
