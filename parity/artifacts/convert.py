"""Paddle -> ONNX with paddle2onnx (in a subprocess), the lint and repair of its output, and validation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import HarnessError
from .paddle_model import PaddleModel


@dataclass
class ConversionRecord:
    """What ``convert_to_onnx`` did, saved beside the ONNX file as ``NAME.conversion.json``."""

    source: str
    onnx: str
    opset: int
    paddle2onnx_version: str
    repairs: list[str] = field(default_factory=list)
    lint: list[dict] = field(default_factory=list)  # what the lint still finds after the repairs
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
    # The conversion lints its own output against the Paddle program: one-to-one values (an epsilon,
    # an activation constant, the LTA Squeeze) are set from the program; anything else is reported.
    from ..diagnose.lint import lint_model
    from ..diagnose.lint import repair as repair_findings
    from ..diagnose.program import read_program

    ops = read_program(paddle_model)
    findings = lint_model(ops, model)
    if repair and any(f.repairable for f in findings):
        record.repairs = repair_findings(model, findings)
        onnx.save(model, str(out))
        findings = lint_model(ops, model)
    record.lint = [f.to_dict() for f in findings]
    onnx.checker.check_model(str(out))
    error = ort_load_error(out)
    if error:
        record.ort_session = f"refused: {error}"
        raise HarnessError(f"{out}: ONNX Runtime refuses the converted model: {error}")
    out.with_suffix(".conversion.json").write_text(json.dumps(record.to_dict(), indent=2))
    return record


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
