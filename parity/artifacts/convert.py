"""Paddle -> ONNX with paddle2onnx (in a subprocess), the caller's review (lint and repair) of its output, and validation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import HarnessError
from ..optional import lazy
from ..signals import held
from .ort import ort_load_error
from .paddle_model import PaddleModel

onnx = lazy("onnx")
paddle2onnx = lazy("paddle2onnx")

# Lints a converted model against its Paddle program and, when told to, repairs it in place:
# (paddle_model, model, repair) -> (repairs, what the lint still finds as dicts). ``parity.diagnose.lint.review``.
Review = Callable[[PaddleModel, object, bool], tuple[list[str], list[dict]]]


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


def convert_to_onnx(paddle_model: PaddleModel, out: str | Path, opset: int = 11, repair: bool = True, *,
                    review: Review | None) -> ConversionRecord:
    """Convert with paddle2onnx, ``review`` (lint, and repair known defects), then validate (ONNX checker + an ORT session).

    ``review`` is required so that no caller forgets it: paddle2onnx's known defects (lost LeakyRelu
    alphas) load and run, wrongly. ``None`` converts without a lint.

    paddle2onnx runs in a subprocess: its ``export`` sets POLYGRAPHY_AUTOINSTALL_DEPS=1 for the
    rest of the process, which would make its own constant folding (and any later Polygraphy
    call) pip-install what is missing at run time. The subprocess imports Polygraphy first with
    auto-install off; what the folding needs (onnx-graphsurgeon, sympy) is a dependency of ours.

    The work happens in a file beside ``out``, which takes its place only once it is reviewed and
    validated (or refused by ONNX Runtime, to be looked at): an interrupted or failed conversion never
    leaves paddle2onnx's unrepaired output at ``out``, where it might load and run, wrongly.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_name(f".{out.stem}.{os.getpid()}.partial.onnx")
    try:
        return _convert(paddle_model, work, out, opset, repair, review)
    finally:
        work.unlink(missing_ok=True)


def _convert(paddle_model: PaddleModel, work: Path, out: Path, opset: int, repair: bool, review) -> ConversionRecord:
    env = {k: v for k, v in os.environ.items() if k != "POLYGRAPHY_AUTOINSTALL_DEPS"}
    proc = subprocess.run(
        [sys.executable, "-c", _CONVERT_SCRIPT, str(paddle_model.model_file), str(paddle_model.params_file), str(work), str(opset)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0 or not work.is_file():
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise HarnessError(f"{paddle_model.model_file}: paddle2onnx failed: {tail[-1] if tail else 'no output'}")
    model = onnx.load(str(work))
    record = ConversionRecord(
        source=str(paddle_model.model_file),
        onnx=str(out),
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset),
        paddle2onnx_version=paddle2onnx.__version__,
    )
    # The conversion lints its own output against the Paddle program: one-to-one values (an epsilon,
    # an activation constant, the LTA Squeeze) are set from the program; anything else is reported.
    if review is not None:
        record.repairs, record.lint = review(paddle_model, model, repair)
        if record.repairs:
            onnx.save(model, str(work))
    onnx.checker.check_model(str(work))
    error = ort_load_error(work)
    error = error and error.replace(str(work), str(out))  # ORT names the file it read
    sidecar = out.with_suffix(".conversion.json")
    with held():  # the model and its record change together, or not at all
        os.replace(work, out)
        if error:
            sidecar.unlink(missing_ok=True)  # an earlier conversion's record does not vouch for this one
        else:
            sidecar.write_text(json.dumps(record.to_dict(), indent=2))
    if error:
        record.ort_session = f"refused: {error}"
        raise HarnessError(f"{out}: ONNX Runtime refuses the converted model: {error}")
    return record
