"""Reading an ONNX graph: its constant tensors, and the values of inner tensors made graph outputs."""
from __future__ import annotations

import numpy as np

from ..optional import lazy
from .ort import session

onnx = lazy("onnx")


def constant_values(model) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs, by tensor name."""
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = onnx.numpy_helper.to_array(a.t)
    return values


def with_outputs(model, names: list[str]):
    """A copy of ``model`` with the tensors ``names`` made graph outputs too (ORT keeps graph outputs through its fusions)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in names:
        if name not in have:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return probe


def intermediates(model, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The tensors ``names`` (those ORT can output) of one run of ``model`` on ``x``."""
    sess = session(with_outputs(model, names))
    wanted = [o.name for o in sess.get_outputs() if o.name in set(names)]
    return dict(zip(wanted, sess.run(wanted, {sess.get_inputs()[0].name: x})))


def probe_shapes(model, names: list[str], batch: int = 2) -> dict[str, tuple[int, ...]]:
    """Run a Squeeze-free copy of ``model`` on zeros and return the shapes of ``names`` ({} when it cannot run)."""
    probe = with_outputs(model, names)
    for i, node in enumerate(probe.graph.node):
        if node.op_type == "Squeeze":
            probe.graph.node[i].CopyFrom(onnx.helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name))
    feed = {}
    init_names = {i.name for i in probe.graph.initializer}
    for inp in probe.graph.input:
        if inp.name in init_names:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        feed[inp.name] = np.zeros(dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
    try:
        outs = session(probe).run(names, feed)
    except Exception:  # the probe is best effort: without shapes nothing is repaired
        return {}
    return {n: tuple(o.shape) for n, o in zip(names, outs)}
