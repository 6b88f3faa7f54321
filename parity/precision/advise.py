"""``parity advise``: the few nodes to keep in FP32 (or out of INT8) so the lower-precision model passes,
verified on ONNX Runtime on the CPU, and written in each deploy system's own settings.

The search, in the spirit of onnxconverter-common's node block list and Polygraphy's ``debug
precision``: the float model's nodes are ranked by how much they suffer (FP16: activations past
FP16's range first, then the largest error jump over their inputs; INT8: the same jump), then the
shortest prefix of that ranking that passes is found by doubling and bisection, then pruned one
node at a time. Every candidate is a real converted model run on the clips and judged by the
precision's tolerances against the FP32 model.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts.onnx_graph import intermediates
from ..artifacts.ort import session
from ..compare import compare_logits
from ..config import default_tolerances
from ..diagnose.lint import tensor_owners
from ..diagnose.program import read_program
from ..optional import lazy
from .int8 import quantize

onnx = lazy("onnx")
float16 = lazy("onnxconverter_common.float16")

FP16_MAX = 65504.0
MAX_EVALUATIONS = 40


@dataclass
class Advice:
    precision: str
    keep_fp32: list[str]  # ONNX node names kept in FP32 (for INT8: left unquantized)
    before: dict
    after: dict | None
    evaluations: int
    settings: dict = field(default_factory=dict)  # the set in each deploy system's own words
    paddle_ops: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _run(model, tensors: list[np.ndarray]) -> np.ndarray:
    sess = session(model)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0].reshape(len(x), -1) for x in tensors]).astype(np.float32)


def _judge(reference: np.ndarray, logits: np.ndarray, tol, precision: str) -> dict:
    paths = [f"clip{i}" for i in range(len(reference))]
    c = compare_logits("candidate", "fp32", precision, paths, [None] * len(paths), reference, logits, tol)
    return {"passed": c.passed, "max_abs": c.max_abs, "top1_agreement": c.top1_agreement, "reasons": c.reasons}


def _ranking(model, tensors: list[np.ndarray], low) -> list[str]:
    """Node names, most suspect first: outputs past FP16's range, then the largest error growth at low precision."""
    nodes = [n for n in model.graph.node if n.op_type not in ("Constant", "Identity", "Shape")]
    names = [o for n in nodes for o in n.output]
    x = tensors[0]
    high = intermediates(model, x, names)
    lowered = intermediates(low, x, [n for n in names if n in high]) if low is not None else {}
    score = {}
    for node in nodes:
        out = node.output[0]
        ref = high.get(out)
        if ref is None or ref.dtype.kind != "f":
            continue
        peak = float(np.max(np.abs(ref))) if ref.size else 0.0
        got = lowered.get(out)
        err = 0.0
        if got is not None and got.shape == ref.shape:
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            err = float(np.nanmax(diff)) / max(peak, 1e-12) if np.isfinite(diff).all() else float("inf")
        score[node.name] = (peak > FP16_MAX, err)
    # the error a node adds over the worst of the nodes feeding it
    producer = {o: n for n in nodes for o in n.output}
    jump = {}
    for node in nodes:
        if node.name not in score:
            continue
        feeding = [score[producer[i].name][1] for i in node.input if i in producer and producer[i].name in score]
        jump[node.name] = (score[node.name][0], score[node.name][1] - max(feeding, default=0.0))
    return [name for name, _ in sorted(jump.items(), key=lambda kv: (not kv[1][0], -kv[1][1]))]


def _fp16(model, keep: list[str]):
    return float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=list(keep))


def advise(onnx_path: Path, tensors: list[np.ndarray], precision: str = "fp16", tolerances=None, calibration: list[np.ndarray] | None = None,
           paddle_model=None) -> Advice:
    """Find the nodes to keep at FP32 so ``onnx_path`` at ``precision`` passes on ``tensors``."""
    tol = (tolerances or default_tolerances())[precision]
    model = onnx.load(str(onnx_path))
    with tempfile.TemporaryDirectory() as tmp:  # INT8 candidates are written here
        return _finish(_search(model, Path(onnx_path), tensors, precision, tol, calibration, Path(tmp)), model, paddle_model)


def _search(model, onnx_path: Path, tensors, precision: str, tol, calibration, tmp: Path) -> Advice:
    """Doubling, bisection and pruning over the ranked nodes; every candidate converted and judged for real."""
    reference = _run(model, tensors)

    def lower(keep: list[str]):
        if precision == "fp16":
            return _fp16(model, keep)

        out = tmp / f"q{len(keep)}.onnx"
        quantize(onnx_path, calibration or tensors, out, nodes_to_exclude=keep)
        return onnx.load(str(out))

    evaluations = 0
    cache: dict[tuple, dict] = {}

    def passes(keep: list[str]) -> dict:
        nonlocal evaluations
        key = tuple(sorted(keep))
        if key not in cache:
            evaluations += 1
            cache[key] = _judge(reference, _run(lower(keep), tensors), tol, precision)
        return cache[key]

    before = passes([])
    if before["passed"]:
        return Advice(precision, [], before, before, evaluations)
    ranking = _ranking(model, tensors, lower([]) if precision == "fp16" else None)
    size, found = 1, None
    while evaluations < MAX_EVALUATIONS:
        if passes(ranking[:size])["passed"]:
            found = size
            break
        if size >= len(ranking):
            break
        size = min(2 * size, len(ranking))
    if found is None:
        return Advice(precision, [], before, None, evaluations)
    lo, hi = found // 2, found  # ranking[:lo] fails (or lo == 0), ranking[:hi] passes
    while hi - lo > 1 and evaluations < MAX_EVALUATIONS:
        mid = (lo + hi) // 2
        if passes(ranking[:mid])["passed"]:
            hi = mid
        else:
            lo = mid
    keep = ranking[:hi]
    if len(keep) <= 8:  # prune what the prefix carried along
        for name in list(keep):
            trial = [n for n in keep if n != name]
            if trial and evaluations < MAX_EVALUATIONS and passes(trial)["passed"]:
                keep = trial
    return Advice(precision, keep, before, passes(keep), evaluations)


def _finish(advice: Advice, model, paddle_model) -> Advice:
    """The set in each deploy system's settings; Paddle's in Paddle's op types, through paddle2onnx's names."""
    owners = {}
    if paddle_model is not None:
        owners = tensor_owners(read_program(paddle_model), model)
    ops = [owners[n] for n in advice.keep_fp32 if n in owners]
    advice.paddle_ops = sorted({op.label for op in ops})
    paddle_types = sorted({op.type for op in ops})
    advice.settings = {
        "onnxconverter_common": {"node_block_list": advice.keep_fp32, "keep_io_types": True},
        "tensorrt": tensorrt_commands(advice.keep_fp32, advice.precision),
        "paddle_inference": {
            "convert_to_mixed_precision_black_list": paddle_types,
            "exp_disable_tensorrt_ops": paddle_types,
        },
    }
    if advice.precision == "int8":
        advice.settings["onnxruntime_quantization"] = {"nodes_to_exclude": advice.keep_fp32}
    return advice


def tensorrt_commands(keep_fp32: list[str], precision: str = "fp16") -> dict:
    """Polygraphy's and trtexec's build commands at ``precision`` with ``keep_fp32`` held in FP32. With nothing to
    keep (a model that passes as it is) the plain build, never a dangling ``--layer-precisions``."""
    flag = "--int8" if precision == "int8" else "--fp16"
    if not keep_fp32:
        return {"polygraphy": f"polygraphy convert model.onnx {flag} -o model.engine",
                "trtexec": f"trtexec --onnx=model.onnx {flag} --saveEngine=model.engine",
                "note": f"nothing to keep in FP32: the model passes at {precision} as it is"}
    layer_precisions = ",".join(f"{n}:fp32" for n in keep_fp32)
    return {
        "polygraphy": f"polygraphy convert model.onnx {flag} --precision-constraints obey --layer-precisions {layer_precisions} -o model.engine",
        "trtexec": f"trtexec --onnx=model.onnx {flag} --precisionConstraints=obey --layerPrecisions={layer_precisions} --saveEngine=model.engine",
    }


def paddle_inference_snippet(advice: Advice) -> str:
    """A Python file for Paddle Inference that runs as it is: every name it uses is imported or defined."""
    black_list = sorted(set(advice.settings["paddle_inference"]["convert_to_mixed_precision_black_list"]))
    lines = ["# Paddle Inference: keep these op types out of lower precision (written by `parity advise`).",
             "from paddle.inference import PlaceType, PrecisionType, convert_to_mixed_precision", "",
             f"BLACK_LIST = {set(black_list) if black_list else 'set()'}", ""]
    if advice.precision == "fp16":
        lines += ["", "def convert(model_file, params_file, mixed_model_file, mixed_params_file):",
                  '    """Write the FP16 model with BLACK_LIST kept in FP32."""',
                  "    convert_to_mixed_precision(model_file, params_file, mixed_model_file, mixed_params_file,",
                  "                               PrecisionType.Half, PlaceType.GPU, True, black_list=BLACK_LIST)", ""]
    lines += ["", "def disable_in_tensorrt(config):",
              '    """Paddle-TRT: run BLACK_LIST outside TensorRT (config: a paddle.inference.Config)."""',
              "    if BLACK_LIST:",
              "        config.exp_disable_tensorrt_ops(sorted(BLACK_LIST))", ""]
    return "\n".join(lines)


def write_settings(advice: Advice, model_path: Path, out: Path) -> list[Path]:
    """The mixed-precision ONNX (FP16) and the three settings files."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if advice.precision == "fp16" and advice.after and advice.after["passed"]:
        mixed = out / "model.mixed.onnx"
        onnx.save(_fp16(onnx.load(str(model_path)), advice.keep_fp32), str(mixed))
        written.append(mixed)
    trt = advice.settings["tensorrt"]
    files = {
        "onnxconverter_common.json": json.dumps(advice.settings["onnxconverter_common"], indent=2),
        "tensorrt_layer_precisions.txt": "".join(f"{line}\n" for line in (
            *([f"# {trt['note']}"] if "note" in trt else []), trt["polygraphy"], trt["trtexec"])),
        "paddle_inference.py": paddle_inference_snippet(advice),
    }
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written
