"""Commands that find why parity breaks: lint, localize, advise, and tolerances (measure the noise floors)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import pvconfig
from ..artifacts import ArtifactCache, PaddleModel, cached_fp16
from ..artifacts.model_files import model_input
from ..backends import BACKENDS, ModelArtifacts
from ..clips import load_clips
from ..compare import worst_rows
from ..config import RunConfig
from ..diagnose.lint import lint, repair
from ..diagnose.localize import localize
from ..engines.local import logit_rows
from ..errors import HarnessError
from ..inputs import prepare_inputs
from ..optional import lazy
from ..precision.advise import advise, write_settings
from ..precision.int8 import calibration_tensors
from ..precision.tolerances import measure
from ..preprocess import ClipError, PreprocessConfig, load_clip_tensor
from .common import EXIT_FAIL, EXIT_PASS, say

onnx = lazy("onnx")


def add_lint(sub) -> None:
    p = sub.add_parser("lint", help="compare what paddle2onnx must carry over, op by op; exit 1 on findings")
    p.add_argument("--paddle-model", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--repair", metavar="OUT.onnx", help="write the model with every one-to-one finding set from the Paddle program")


def cmd_lint(args) -> int:
    model = PaddleModel.locate(args.paddle_model)
    if not Path(args.onnx).is_file():
        raise HarnessError(f"{args.onnx}: ONNX model not found")
    findings = lint(model, args.onnx)
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2, default=str))
    else:
        for f in findings:
            print(f"{f.rule}: {f.message}")
        print(f"{len(findings)} finding(s) in {args.onnx} against {model.model_file}")
    if args.repair:
        fixed = onnx.load(args.onnx)
        for line in repair(fixed, findings):
            say(f"repaired: {line}")
        try:
            onnx.save(fixed, args.repair)
        except OSError as exc:
            raise HarnessError(f"{args.repair}: cannot write: {exc.strerror or exc}") from None
    return EXIT_FAIL if findings else EXIT_PASS


def add_localize(sub) -> None:
    p = sub.add_parser("localize", help="the first ONNX node whose output diverges from Paddle's, on the worst clip")
    p.add_argument("--paddle-model", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--clips", required=True, help="clip list, folder or video; the clip where the outputs differ most is used")
    localizable = {side: [n for n, b in BACKENDS.items() if b.localizable and b.needs == side] for side in ("onnx", "paddle")}
    p.add_argument("--backend", default="onnxruntime", choices=localizable["onnx"])
    p.add_argument("--against", default="paddle", choices=localizable["paddle"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--cache", help="artifact cache folder")


def cmd_localize(args) -> int:
    model = PaddleModel.locate(args.paddle_model)
    onnx = Path(args.onnx)
    if not onnx.is_file():
        raise HarnessError(f"{onnx}: ONNX model not found")
    _, num_seg, size = model_input(ModelArtifacts(paddle_model=model, onnx=onnx))
    pre = PreprocessConfig.for_size(num_seg or 8, size or 224)
    cache = ArtifactCache(args.cache) if args.cache else ArtifactCache()
    precision = BACKENDS[args.backend].precision
    target = cached_fp16(onnx, cache) if precision == "fp16" else onnx
    art = ModelArtifacts(paddle_model=model, onnx=onnx, cache=cache, pre=pre, num_seg=pre.num_seg, size=pre.target_size)
    art.input_name = model_input(art)[0]
    clips, rows = [], {args.against: [], args.backend: []}
    runners = [BACKENDS[name].make_runner(art) for name in rows]
    for runner in runners:
        runner.activate()
    try:
        for clip in load_clips(args.clips):  # each clip through both sides once; the worst is picked as `run --localize` picks
            try:
                x = load_clip_tensor(clip.path, pre, clip.num_frames)
            except ClipError as exc:
                say(f"  skipped clip: {exc}")
                continue
            clips.append(clip)
            for name, runner in zip(rows, runners):
                rows[name].append(logit_rows(runner.infer({art.input_name: x}, check_inputs=False), 1)[0])
    finally:
        for runner in runners:
            runner.deactivate()
    if not clips:
        raise HarnessError(f"{args.clips}: no readable clip")
    tol = RunConfig().tolerance_for(args.backend, precision, args.backend)
    (i,) = worst_rows(np.stack(rows[args.against]), np.stack(rows[args.backend]), tol, 1)
    clip = clips[i]
    diagnosis = localize(model, target, load_clip_tensor(clip.path, pre, clip.num_frames), args.backend, args.against, str(clip.path),
                         precision)
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2))
    elif diagnosis.first_divergence is None:
        print(f"no divergence over {diagnosis.tolerance:g} (relative) on {diagnosis.clip}: {diagnosis.note}")
    else:
        d = diagnosis.first_divergence
        how = "first divergence" if diagnosis.mode == "first-divergence" else "largest error jump"
        print(f"{how}: {d.onnx_node} ({d.onnx_op}) = Paddle {d.paddle_op}: error {d.error_out:.3g} at its output, "
              f"{d.error_in:.3g} at its inputs (relative; clip {diagnosis.clip})")
    return EXIT_PASS if diagnosis.first_divergence is None else EXIT_FAIL


def _model_tensors(onnx: Path, clips: str, limit: int = 32):
    if not onnx.is_file():
        raise HarnessError(f"{onnx}: ONNX model not found")
    _, num_seg, size = model_input(ModelArtifacts(onnx=onnx))
    pre = PreprocessConfig.for_size(num_seg or 8, size or 224)
    items = prepare_inputs(load_clips(clips), pre)
    for item in items:
        if not item.ok:
            say(f"  skipped clip: {item.error}")
    tensors = [i.tensor for i in items if i.ok][:limit]
    if not tensors:
        raise HarnessError(f"{clips}: no readable clip")
    return tensors, pre


def add_advise(sub) -> None:
    p = sub.add_parser("advise", help="the nodes to keep in FP32 (or out of INT8) so the lower-precision model passes")
    p.add_argument("--precision", choices=["fp16", "int8"], default="fp16")
    p.add_argument("--onnx", required=True)
    p.add_argument("--clips", required=True, help="clips to verify on (at most the first 32 readable ones)")
    p.add_argument("--paddle-model", help="the exported Paddle model: gives the set in Paddle's op types too")
    p.add_argument("--calibration", help="INT8 calibration clips (default: --clips)")
    p.add_argument("--out", help="write the mixed-precision ONNX and the settings files here")
    p.add_argument("--json", action="store_true")


def cmd_advise(args) -> int:
    onnx = Path(args.onnx)
    tensors, pre = _model_tensors(onnx, args.clips)
    calibration = calibration_tensors(args.calibration or args.clips, pre)[0] if args.precision == "int8" else None
    model = PaddleModel.locate(args.paddle_model) if args.paddle_model else None
    advice = advise(onnx, tensors, args.precision, calibration=calibration, paddle_model=model)
    if args.out:
        for path in write_settings(advice, onnx, Path(args.out)):
            say(f"wrote {path}")
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2, default=str))
    else:
        b, a = advice.before, advice.after
        print(f"before: {'pass' if b['passed'] else 'FAIL'} (max_abs {b['max_abs']:.3g}, top1 {b['top1_agreement']:.3f})")
        if a is None:
            print(f"no node set found within {advice.evaluations} tries")
        else:
            print(f"keep in FP32: {', '.join(advice.keep_fp32) or 'nothing'}"
                  + (f" (Paddle: {'; '.join(advice.paddle_ops)})" if advice.paddle_ops else ""))
            print(f"after: {'pass' if a['passed'] else 'FAIL'} (max_abs {a['max_abs']:.3g}, top1 {a['top1_agreement']:.3f})")
    return EXIT_PASS if advice.after and advice.after["passed"] else EXIT_FAIL


def add_tolerances(sub) -> None:
    p = sub.add_parser("tolerances", help="measure each precision's noise floor on a clean conversion and propose tolerances")
    p.add_argument("--paddle-model", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--calibration", help="INT8 calibration clips: adds the INT8 floor")
    p.add_argument("--factor", type=float, default=10.0, help="tolerances are this multiple of the measured floor (default 10)")
    p.add_argument("--out", default="parity.toml", help="the config file to write (default parity.toml)")
    p.add_argument("--cache", help="artifact cache folder")
    p.add_argument("--pv-config", metavar="CONFIG.yaml", help="your PaddleVideo config: the preprocessing of its INFERENCE helper "
                   "(written into the proposed config)")


def cmd_tolerances(args) -> int:
    pv = pvconfig.apply(args)
    if pv is not None:
        say(pv.line())
    model = PaddleModel.locate(args.paddle_model)
    cache = ArtifactCache(args.cache) if args.cache else ArtifactCache()
    proposal = measure(model, Path(args.onnx), args.clips, cache, args.factor, args.calibration, pv)
    try:
        Path(args.out).write_text(proposal.config_text)
    except OSError as exc:
        raise HarnessError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    for line in proposal.lines:
        print(line)
    print(f"wrote {args.out}: run the gate with `parity run --config {args.out}` or `pytest --parity-config {args.out}`")
    return EXIT_PASS


COMMANDS = {"lint": (add_lint, cmd_lint), "localize": (add_localize, cmd_localize), "advise": (add_advise, cmd_advise),
            "tolerances": (add_tolerances, cmd_tolerances)}
