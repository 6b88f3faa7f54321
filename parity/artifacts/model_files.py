"""What the model files themselves declare: the inputs (names, shapes, layouts), the batch, the classes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import HarnessError, one_line
from ..optional import lazy
from .paddle_model import PaddleModel, output_classes

onnx = lazy("onnx")


class ModelFiles(Protocol):
    """The exported models a run compares (``parity.backends.ModelArtifacts`` is one)."""

    paddle_model: PaddleModel | None
    onnx: Path | None


def _onnx_inputs(path: Path) -> list[tuple[str, list]]:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others on a bad file
        raise HarnessError(f"{path}: not a readable ONNX model: {one_line(exc)}") from None
    inits = {i.name for i in model.graph.initializer}
    return [
        (i.name, [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim])
        for i in model.graph.input
        if i.name not in inits
    ]


def _model_inputs(art: ModelFiles) -> list[tuple[Path, list]]:
    found = []
    if art.paddle_model is not None:
        found.append((art.paddle_model.model_file, art.paddle_model.inputs()))
    if art.onnx is not None:
        found.append((art.onnx, _onnx_inputs(art.onnx)))
    return found


def check_batch(art: ModelFiles, batch: int) -> None:
    """Batches of more than one clip need the models' batch dimension to be dynamic."""
    if batch <= 1:
        return
    for path, inputs in _model_inputs(art):
        dims = next((d for _, d in inputs if d and d[0] > 0 and d[0] != batch), None)  # every input's batch dimension
        if dims is not None:
            raise HarnessError(f"{path}: the model's batch dimension is fixed at {dims[0]}, so it cannot run batches of {batch} "
                               "(export with a None batch, as PaddleVideo's export does)")


def model_input(art: ModelFiles) -> tuple[str, int | None, int | None]:
    """The models' input name, segment count and crop size, read from the model files.

    Both the Paddle model and the ONNX model are read when given; they must agree.
    """
    specs = []
    for path, inputs in _model_inputs(art):
        if len(inputs) != 1:
            raise HarnessError(f"{path}: expected one input, found {len(inputs)}: {', '.join(n for n, _ in inputs)}")
        name, dims = inputs[0]
        if len(dims) != 5 or dims[2] != 3:
            raise HarnessError(f"{path}: input {name} has shape {dims}, expected [N, T, 3, H, W]")
        specs.append((path, name, dims[1] if dims[1] > 0 else None, dims[3] if dims[3] > 0 else None))
    if len(specs) == 2 and specs[0][1:] != specs[1][1:]:
        (p0, *a), (p1, *b) = specs
        raise HarnessError(f"{p1}: input (name, T, size) {tuple(b)} differs from {p0.name}'s {tuple(a)}")
    return specs[0][1:]


LAYOUTS = {"ntchw": "[N, T, 3, H, W]", "ncthw": "[N, 3, T, H, W]"}


@dataclass(frozen=True)
class InputSpec:
    """One model input as the model files declare it: its name, its dims (-1: dynamic) and its layout."""

    name: str
    dims: tuple[int, ...]
    layout: str  # "ntchw" | "ncthw"

    def to_dict(self) -> dict:
        return {"name": self.name, "dims": list(self.dims), "layout": self.layout}


def _layout_of(path: Path, name: str, dims: list, want: str | None) -> str:
    """The layout ``dims`` fit: ``want`` when given (checked), else the one with its 3 channels in place."""
    fits = [k for k, at in (("ntchw", 2), ("ncthw", 1)) if len(dims) == 5 and dims[at] in (3, -1)]
    if want is not None:
        if want not in fits:
            raise HarnessError(f"{path}: input {name} has shape {dims}, expected {LAYOUTS.get(want, want)}")
        return want
    if not fits:
        raise HarnessError(f"{path}: input {name} has shape {dims}, expected [N, T, 3, H, W] or [N, 3, T, H, W]")
    return "ntchw" if dims[2] == 3 else fits[0]


def model_inputs(art: ModelFiles, layouts: tuple[str, ...] | None = None) -> list[InputSpec]:
    """Every model input, in the model's order: names, dims and layouts (``layouts``: the recipe's, one per input).

    Both the Paddle model and the ONNX model are read when given; they must agree on the names and the dims.
    """
    found = []
    for path, inputs in _model_inputs(art):
        if layouts is not None and len(inputs) != len(layouts):
            raise HarnessError(f"{path}: the model has {len(inputs)} input(s) ({', '.join(n for n, _ in inputs)}); "
                               f"the preprocessing gives {len(layouts)}")
        specs = [InputSpec(name, tuple(int(d) for d in dims), _layout_of(path, name, dims, layouts[i] if layouts else None))
                 for i, (name, dims) in enumerate(inputs)]
        found.append((path, specs))
    if len(found) == 2 and [(s.name, s.dims) for s in found[0][1]] != [(s.name, s.dims) for s in found[1][1]]:
        (p0, a), (p1, b) = found
        raise HarnessError(f"{p1}: inputs {[(s.name, list(s.dims)) for s in b]} differ from {p0.name}'s {[(s.name, list(s.dims)) for s in a]}")
    return found[0][1] if found else []


def model_classes(art: ModelFiles) -> int:
    """The number of classes the exported model outputs (ONNX output shape, else the Paddle program's)."""
    if art.onnx is not None:
        dims = onnx.load(str(art.onnx), load_external_data=False).graph.output[0].type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value > 0:
            return dims[-1].dim_value
    classes = output_classes(art.paddle_model) if art.paddle_model is not None else None
    if not classes:
        raise HarnessError("--weights: cannot read the number of classes from the exported model")
    return classes
