"""What the model files themselves declare: the input (name, segments, crop size), the batch, the classes."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..errors import HarnessError, one_line
from .paddle_model import PaddleModel, output_classes


class ModelFiles(Protocol):
    """The exported models a run compares (``parity.backends.ModelArtifacts`` is one)."""

    paddle_model: PaddleModel | None
    onnx: Path | None


def _onnx_inputs(path: Path) -> list[tuple[str, list]]:
    import onnx

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
        dims = inputs[0][1]
        if dims and dims[0] > 0 and dims[0] != batch:
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


def model_classes(art: ModelFiles) -> int:
    """The number of classes the exported model outputs (ONNX output shape, else the Paddle program's)."""
    import onnx

    if art.onnx is not None:
        dims = onnx.load(str(art.onnx), load_external_data=False).graph.output[0].type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value > 0:
            return dims[-1].dim_value
    classes = output_classes(art.paddle_model) if art.paddle_model is not None else None
    if not classes:
        raise HarnessError("--weights: cannot read the number of classes from the exported model")
    return classes
