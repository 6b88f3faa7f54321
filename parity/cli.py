"""The ``parity`` command line: demo, run, convert, export, preprocess, backends, build, golden."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")  # keep Paddle's C++ logging off the user's terminal
warnings.filterwarnings("ignore", message="No ccache found")  # paddle's import-time notice
logging.getLogger("matplotlib").setLevel(logging.WARNING)

from .engines import ENGINES  # noqa: E402
from .errors import INTERRUPTED, HarnessError, check_interrupted, one_line  # noqa: E402

EXIT_PASS, EXIT_FAIL, EXIT_HARNESS = 0, 1, 2


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paddle-model", help="exported Paddle inference model: NAME.json or NAME.pdmodel (with NAME.pdiparams), or its prefix")
    p.add_argument("--onnx", help="ONNX model file")
    p.add_argument("--clips", help="UCF101-format list (path label) or a folder of videos")
    p.add_argument("--inputs", help="saved input tensors instead of clips: a folder of .npy [1, T, 3, S, S], or a list of them "
                   "with labels (as a repro bundle's inputs/list.txt); nothing is decoded")
    p.add_argument("--labels", help="label-name file (idx name); default: labels.txt beside the list")
    p.add_argument("--backends", help="comma-separated backends (default paddle,onnxruntime,onnxruntime-fp16), or 'all' (every backend available here)")
    p.add_argument("--require", help="comma-separated backends that must run: unavailable ones make the run exit 2")
    p.add_argument("--trt-engine", help="a prebuilt TensorRT engine (from `parity build`) for the tensorrt-* backend")
    p.add_argument("--trust-engine", action=argparse.BooleanOptionalAction, default=None,
                   help="use a --trt-engine that has no .json sidecar (its model and build cannot be verified; the report says so)")
    p.add_argument("--baseline", metavar="PREVIOUS", help="the previous release's report (or golden) folder: its numbers beside "
                   "this run's, in the report and the summary; a margin that more than doubled is a warning, never a failure")
    p.add_argument("--golden", help="compare every backend with golden outputs (`parity golden save`) instead of a live reference")
    p.add_argument("--reference", help="backend the others are compared with (default paddle)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="run every backend in its own process, so a native crash is that backend's error (GPU backends always are)")
    p.add_argument("--num-seg", type=int, help="segments T (default: read from the model)")
    p.add_argument("--short-size", type=int, help="Scale short side (default: crop size x 256/224, so 256 for 224)")
    p.add_argument("--target-size", type=int, help="CenterCrop size (default: read from the model)")
    p.add_argument("--preprocess", help="preprocessing: paddlevideo (predict.py, default) or cpp (the C++ deploy path); "
                   "paddlevideo,cpp also runs the reference on cpp over the same frames (preprocessing attribution)")
    p.add_argument("--config", help="parity.toml, or a pyproject.toml with [tool.parity]")
    p.add_argument("--tol", action="append", default=[], metavar="SCOPE.FIELD=VALUE",
                   help="override a tolerance, e.g. fp16.atol=0.05 or onnxruntime.rtol=1e-3 (repeatable)")
    p.add_argument("--threads", type=int, help="math threads of each backend (default: every core; backends take turns)")
    p.add_argument("--workers", type=int, help="decode processes (default: one per core; 0 decodes in the main process)")
    p.add_argument("--batch-size", type=int, help="clips per inference call (default 1; needs the model's batch dimension to be dynamic)")
    p.add_argument("--batch-check", type=int, metavar="K",
                   help="also run every backend at batch K (as NAME@bK) and compare it with itself at the run's batch size")
    p.add_argument("--tensor-cache", metavar="DIR", help="keep decoded tensors here, keyed by clip hash, preprocessing and decoder")
    p.add_argument("--engine", choices=ENGINES, help="local (default) or ray: decode tasks and one actor per backend on a Ray cluster")
    p.add_argument("--ray-address", help="the Ray cluster to join (default $RAY_ADDRESS, else a local instance)")
    p.add_argument("--backend-timeout", type=float, metavar="SECONDS",
                   help="kill a backend that takes longer than this on one call (start-up included); runs every backend in its own process")
    p.add_argument("--decode-timeout", type=float, metavar="SECONDS",
                   help="a clip whose decode takes longer is that clip's error and its decode process is replaced (default 300)")
    p.add_argument("--lint", choices=["error", "warn", "off"],
                   help="lint the ONNX model against the Paddle program first: error (default; findings fail the verdict), warn, off")
    p.add_argument("--localize", action=argparse.BooleanOptionalAction, default=None,
                   help="on a failing ONNX Runtime pair, name the first diverging node and its Paddle op (results.json diagnosis)")
    p.add_argument("--external", action="append", default=[], metavar="NAME=CMD",
                   help="your own program as a backend, run per clip: CMD takes {video} or {tensor}, and writes {out} "
                   "(batch form: {list} or {tensor_list} with {out_dir}); repeatable")
    p.add_argument("--external-precision", action="append", default=[], metavar="NAME=fp32|fp16|int8", help="the tolerance of NAME (default fp32)")
    p.add_argument("--external-timeout", type=float, help="seconds one call of a program may take (default 600)")
    p.add_argument("--logits", action="append", default=[], metavar="NAME=FILE",
                   help="logits a device produced elsewhere, as a backend: .npz keyed by clip path or name, or CSV (clip, logits...)")
    p.add_argument("--calibration", metavar="LIST", help="clips to calibrate the onnxruntime-int8 backend on (keep them apart from --clips)")
    p.add_argument("--weights", help="a training checkpoint (.pdparams, any PaddleVideo form): runs as paddle-dygraph, the chain's first hop")
    p.add_argument("--arch", choices=["pptsm_v2", "pptsm_r50"], help="the checkpoint's model (default: model_spec.json beside it, else pptsm_v2)")
    p.add_argument("--temporal-attention", action=argparse.BooleanOptionalAction, default=None, help="PP-TSMv2 with LTA (GlobalAttention)")
    p.add_argument("--scale", type=float, help="PP-TSMv2 width multiplier of the checkpoint's model")
    p.add_argument("--depths", help="PP-TSMv2 blocks per stage of the checkpoint's model, e.g. 2,2,6,2")
    p.add_argument("--class-expand", type=int, help="PP-TSMv2 last conv width of the checkpoint's model")
    p.add_argument("--allow-trt-fallback", action=argparse.BooleanOptionalAction, default=None,
                   help="let ONNX Runtime's TensorRT EP hand nodes it rejects to CUDA (refused by default: not a TensorRT result)")
    p.add_argument("--advise", action=argparse.BooleanOptionalAction, default=None,
                   help="on a failing onnxruntime-fp16/-int8 pair, find the nodes to keep in FP32 (results.json advice)")
    p.add_argument("--allow-low-precision-reference", action=argparse.BooleanOptionalAction, default=None,
                   help="allow an fp16/int8 reference to judge fp32 backends (refused by default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description="PP-TSM deployment parity harness")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate clips, train, export, convert and compare a small PP-TSMv2")
    demo.add_argument("--out", default="reports/demo", help="report and artifact folder (default reports/demo)")
    demo.add_argument("--cache", help="artifact cache folder (default $PARITY_CACHE_DIR or ~/.cache/pptsm-parity)")

    run = sub.add_parser("run", help="compare backends on a model and clips; exit 1 when parity breaks")
    _add_run_args(run)
    run.add_argument("--report", help="report folder (default reports/latest)")
    run.add_argument("--write-config", metavar="PARITY_TOML", help="write the config of exactly this run, for `pytest --parity-config`")
    run.add_argument("--absolute-paths", action="store_true", help="--write-config with absolute paths (default: relative to the config file)")
    run.add_argument("--cache", help="artifact cache folder")
    run.add_argument("--summary-md", metavar="FILE", help="also write a short Markdown summary (e.g. \"$GITHUB_STEP_SUMMARY\")")
    run.add_argument("--shard", metavar="i/N", help="run the i-th of N deterministic slices of the clips (1-based); join them with `parity merge`")

    merge = sub.add_parser("merge", help="join the reports of `parity run --shard i/N` into one report and one verdict")
    merge.add_argument("shards", nargs="+", help="the shards' report folders")
    merge.add_argument("--report", required=True, help="report folder to write")
    merge.add_argument("--summary-md", metavar="FILE", help="also write a short Markdown summary")

    sub.add_parser("schema", help="print the JSON Schema of results.json")

    rel = sub.add_parser("compare-releases", help="the saved reports of several releases side by side, oldest first")
    rel.add_argument("folders", nargs="+", help="report folders of `parity run`, oldest first")

    exp = sub.add_parser("export", help="export a PaddleVideo checkpoint as a Paddle inference model, as PaddleVideo's export does")
    exp.add_argument("--arch", choices=["pptsm_v2", "pptsm_r50"], default="pptsm_v2")
    exp.add_argument("--weights", required=True, help="checkpoint .pdparams (any PaddleVideo prefix form)")
    exp.add_argument("--num-classes", type=int, required=True)
    exp.add_argument("--num-seg", type=int, default=8)
    exp.add_argument("--temporal-attention", action=argparse.BooleanOptionalAction, default=False,
                     help="PP-TSMv2 with LTA (GlobalAttention; default off, as PaddleVideo)")
    exp.add_argument("--size", type=int, default=224)
    exp.add_argument("--scale", type=float, default=1.0, help="PP-TSMv2 width multiplier (default 1.0)")
    exp.add_argument("--depths", default="2,2,6,2", help="PP-TSMv2 blocks per stage (default 2,2,6,2)")
    exp.add_argument("--class-expand", type=int, default=1280, help="PP-TSMv2 last conv width (default 1280)")
    exp.add_argument("--out", required=True, help="output prefix DIR/NAME")

    pre = sub.add_parser("preprocess", help="write the exact float32 [1, T, 3, H, W] tensors the harness feeds the model")
    pre.add_argument("source", nargs="?", help="a video file or a UCF101 frame folder (img_00001.jpg, ...)")
    pre.add_argument("-o", "--output", help="output .npy (with SOURCE)")
    pre.add_argument("--clips", help="a clip list or folder: every clip's tensor into --out, with a manifest, for a device without Python")
    pre.add_argument("--out", help="output folder (with --clips)")
    pre.add_argument("--onnx", help="read T and the crop size from this ONNX model (flags that disagree are errors)")
    pre.add_argument("--paddle-model", help="read T and the crop size from this exported Paddle model")
    pre.add_argument("--num-seg", type=int, help="segments T (default: the model's, else 8)")
    pre.add_argument("--short-size", type=int, help="Scale short side (default: crop size x 256/224)")
    pre.add_argument("--target-size", type=int, help="CenterCrop size (default: the model's, else 224)")
    pre.add_argument("--variant", choices=["paddlevideo", "cpp"], default="paddlevideo",
                     help="paddlevideo: predict.py's path (default); cpp: the C++ deploy path")

    gold = sub.add_parser("golden", help="golden outputs: store a run's reference logits to gate later releases")
    gold_sub = gold.add_subparsers(dest="golden_command", required=True)
    gsave = gold_sub.add_parser("save", help="store the reference logits of a report folder")
    gsave.add_argument("report_dir")
    gsave.add_argument("--to", required=True, help="golden folder to write")

    bk = sub.add_parser("backends", help="list every backend, whether it can run here, and why not")
    bk.add_argument("--json", action="store_true", help="print JSON instead of a table")

    bld = sub.add_parser("build", help="prebuild a TensorRT engine from an ONNX model (needs a GPU and tensorrt)")
    bld.add_argument("--onnx", required=True)
    bld.add_argument("--precision", choices=["fp32", "fp16"], required=True)
    bld.add_argument("--batch", type=int, default=1, help="largest batch of the optimization profile (default 1)")
    bld.add_argument("--out", help="copy the engine (and its .json sidecar) into this folder")
    bld.add_argument("--cache", help="artifact cache folder")

    lnt = sub.add_parser("lint", help="compare what paddle2onnx must carry over, op by op; exit 1 on findings")
    lnt.add_argument("--paddle-model", required=True)
    lnt.add_argument("--onnx", required=True)
    lnt.add_argument("--json", action="store_true", help="print the findings as JSON")
    lnt.add_argument("--repair", metavar="OUT.onnx", help="write the model with every one-to-one finding set from the Paddle program")

    loc = sub.add_parser("localize", help="the first ONNX node whose output diverges from Paddle's, on the worst clip")
    loc.add_argument("--paddle-model", required=True)
    loc.add_argument("--onnx", required=True)
    loc.add_argument("--clips", required=True, help="clip list, folder or video; the clip where the outputs differ most is used")
    loc.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "onnxruntime-fp16"])
    loc.add_argument("--against", default="paddle", choices=["paddle", "paddle-native"])
    loc.add_argument("--json", action="store_true")
    loc.add_argument("--cache", help="artifact cache folder")

    adv = sub.add_parser("advise", help="the nodes to keep in FP32 (or out of INT8) so the lower-precision model passes")
    adv.add_argument("--precision", choices=["fp16", "int8"], default="fp16")
    adv.add_argument("--onnx", required=True)
    adv.add_argument("--clips", required=True, help="clips to verify on (at most the first 32 readable ones)")
    adv.add_argument("--paddle-model", help="the exported Paddle model: gives the set in Paddle's op types too")
    adv.add_argument("--calibration", help="INT8 calibration clips (default: --clips)")
    adv.add_argument("--out", help="write the mixed-precision ONNX and the settings files here")
    adv.add_argument("--json", action="store_true")

    tol = sub.add_parser("tolerances", help="measure each precision's noise floor on a clean conversion and propose tolerances")
    tol.add_argument("--paddle-model", required=True)
    tol.add_argument("--onnx", required=True)
    tol.add_argument("--clips", required=True)
    tol.add_argument("--calibration", help="INT8 calibration clips: adds the INT8 floor")
    tol.add_argument("--factor", type=float, default=10.0, help="tolerances are this multiple of the measured floor (default 10)")
    tol.add_argument("--out", default="parity.toml", help="the config file to write (default parity.toml)")
    tol.add_argument("--cache", help="artifact cache folder")

    conv = sub.add_parser("convert", help="convert a Paddle inference model to ONNX with paddle2onnx, repairing known defects")
    conv.add_argument("--paddle-model", required=True)
    conv.add_argument("--out", required=True, help="output .onnx path")
    conv.add_argument("--opset", type=int, default=11)
    conv.add_argument("--no-repair", action="store_true", help="keep paddle2onnx's output as it is")
    return parser


def _on_sigint(signum, frame):
    INTERRUPTED.set()
    raise KeyboardInterrupt


def _unraisable(hook):
    """A Ctrl-C that lands in a callback Python cannot raise from (a weakref's, a finalizer's) would be printed
    as 'Exception ignored ... Traceback'; the interruption is already flagged and ends the run at the next check."""
    def quiet(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            INTERRUPTED.set()
            return
        hook(unraisable)

    return quiet


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        sys.unraisablehook = _unraisable(sys.__unraisablehook__)
    try:
        commands = {
            "demo": cmd_demo, "run": cmd_run, "convert": cmd_convert, "export": cmd_export,
            "preprocess": cmd_preprocess, "backends": cmd_backends, "build": cmd_build, "golden": cmd_golden, "merge": cmd_merge,
            "lint": cmd_lint, "localize": cmd_localize, "advise": cmd_advise, "tolerances": cmd_tolerances,
            "schema": cmd_schema, "compare-releases": cmd_compare_releases,
        }
        return commands[args.command](args)
    except HarnessError as exc:
        _say(f"parity: error: {exc}")
        return EXIT_HARNESS
    except KeyboardInterrupt:
        _say("parity: interrupted")
        return 130
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get("PARITY_DEBUG"):
            raise
        _say(f"parity: internal error: {one_line(exc)} (PARITY_DEBUG=1 shows the traceback)")
        return EXIT_HARNESS


def _run_config(args):
    from .config import RunConfig, apply_tolerance_overrides, load_config_file

    cfg = load_config_file(args.config) if args.config else RunConfig()
    for name in ("paddle_model", "onnx", "clips", "labels", "reference", "num_seg", "short_size", "target_size",
                 "preprocess", "report", "trt_engine", "trust_engine", "golden", "baseline", "isolate", "workers", "batch_size", "batch_check",
                 "tensor_cache", "engine", "ray_address", "backend_timeout", "decode_timeout", "allow_low_precision_reference", "lint", "localize",
                 "weights", "arch", "temporal_attention", "scale", "class_expand", "calibration", "advise", "allow_trt_fallback"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    for name in ("backends", "require"):
        value = getattr(args, name, None)
        if value:
            setattr(cfg, name, [b.strip() for b in value.split(",") if b.strip()])
    if getattr(args, "depths", None):
        try:
            cfg.depths = [int(d) for d in args.depths.split(",")]
        except ValueError:
            raise HarnessError(f"--depths {args.depths!r}: expected integers like 2,2,6,2") from None
    given: dict[str, set] = {}
    for flag, table in (("external", "external"), ("external_precision", "external_precision"), ("logits", "logits_files")):
        for item in getattr(args, flag, None) or []:
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise HarnessError(f"--{flag.replace('_', '-')} {item!r}: expected NAME=VALUE")
            if table == "logits_files":
                value = str(Path(value.strip()).resolve())
            if name.strip() in given.setdefault(table, set()):
                raise HarnessError(f"--{flag.replace('_', '-')} {name.strip()!r} is given twice; give each its own name")
            given[table].add(name.strip())
            getattr(cfg, table)[name.strip()] = value.strip()
    if getattr(args, "external_timeout", None) is not None:
        cfg.external_timeout = args.external_timeout
    if getattr(args, "inputs", None):
        if args.clips:
            raise HarnessError("--inputs and --clips: give one of them")
        cfg.clips = args.inputs
    apply_tolerance_overrides(cfg, args.tol)
    return cfg


def _finish(result, report_dir, summary_md: str | None = None) -> int:
    from .report import write_report

    check_interrupted()  # an interrupted run reports nothing, whatever a library made of the Ctrl-C
    html = write_report(result, report_dir)
    if summary_md:
        from . import summary as markdown

        markdown.write(result, summary_md, html)
    print(summary(result))
    print(f"report: {html}")
    if result.problems:
        for problem in result.problems:
            _say(f"parity: error: {problem}")
        return EXIT_HARNESS
    return EXIT_PASS if result.verdict == "pass" else EXIT_FAIL


def summary(result) -> str:
    from .conclusion import lines as conclusion

    lines = conclusion(result)  # the same lines head the report and the Markdown summary
    lines += [f"  note: {n}" for n in result.notes if n.startswith("reference ")]
    lines += [f"  {n}" for n in result.notes if n.startswith("warning: ")]
    shard = (result.run or {}).get("shard")
    if shard:
        lines.append(f"  shard {shard['index']}/{shard['count']}: {len(result.clips)} of the {shard['clips_listed']} listed clips "
                     "(join the shards with `parity merge`)")
    for b in result.backends:
        if b.status != "ok":
            reason = b.reason if b.reason.startswith(b.status) else f"{b.status}: {b.reason}"
            lines.append(f"  {b.name:<20} {reason}")
    for c in result.comparisons:
        acc = "" if c.accuracy is None else f"  acc {c.accuracy:.3f} (ref {c.reference_accuracy:.3f})"
        state = "pass" if c.passed else "FAIL"
        lines.append(f"  {c.backend:<20} {state}  max_abs {c.max_abs:.3g}  cos_min {c.cosine_min:.6f}  top1 {c.top1_agreement:.3f}{acc}")
        for reason in c.reasons:
            lines.append(f"      - {reason}")
        for path in c.failed_clips[:10]:
            lines.append(f"      broke: {path}")
        if len(c.failed_clips) > 10:
            lines.append(f"      ... and {len(c.failed_clips) - 10} more clips")
    for clip in result.clips:
        if clip.status != "ok":
            lines.append(f"  skipped clip: {clip.error}")
    for a in result.preprocessing_attribution:
        lines.append(f"  preprocessing {a['variant']} vs {result.preprocess['variant']}: max_abs {a['max_abs']:.3g}, "
                     f"{a['top1_flips']} of {a['clips']} top-1 classes flip on the reference")
    hop = result.first_failing_hop
    if hop:
        lines.append(f"  first failing hop: {hop['from']} -> {hop['to']} (max_abs {hop['max_abs']:.3g}, top1 {hop['top1_agreement']:.3f})")
    decode, cache = result.run.get("decode"), result.run.get("tensor_cache")
    if decode:
        cached = f", tensor cache {cache['entries']} entries, {cache['bytes'] / 2**20:.1f} MiB" if cache else ""
        extra = "".join(f", {label} {decode[key]}" for key, label in (("saved_inputs", "saved inputs"), ("timeouts", "past the decode time limit"),
                                                                        ("cache_rejected", "cache entries rejected")) if decode.get(key))
        lines.append(f"  clips: {decode['clips']}, decoded {decode['decoded']}, from cache {decode['cache_hits']}{extra}{cached}")
    return "\n".join(lines)


def cmd_run(args) -> int:
    from .artifacts import ArtifactCache
    from .run import run

    cfg = _run_config(args)
    result = run(cfg, cache=ArtifactCache(args.cache) if args.cache else None, threads=args.threads, shard=args.shard)
    if args.write_config:
        from .config import dump_config

        try:
            target = Path(args.write_config)
            target.write_text(dump_config(cfg, None if args.absolute_paths else target.parent))
        except OSError as exc:
            raise HarnessError(f"{args.write_config}: cannot write the config: {exc.strerror or exc}") from None
        _say(f"wrote {args.write_config}: run it as a gate with `pytest --parity-config {args.write_config}`")
    return _finish(result, cfg.report, args.summary_md)


def cmd_lint(args) -> int:
    import json

    import onnx

    from .artifacts import PaddleModel
    from .diagnose.lint import lint, repair

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
            _say(f"repaired: {line}")
        try:
            onnx.save(fixed, args.repair)
        except OSError as exc:
            raise HarnessError(f"{args.repair}: cannot write: {exc.strerror or exc}") from None
    return EXIT_FAIL if findings else EXIT_PASS


def cmd_localize(args) -> int:
    import json

    from .artifacts import ArtifactCache, PaddleModel, cached_fp16
    from .backends import BACKENDS, ModelArtifacts
    from .clips import load_clips
    from .diagnose.localize import localize
    from .preprocess import ClipError, PreprocessConfig, load_clip_tensor
    from .run import model_input

    model = PaddleModel.locate(args.paddle_model)
    onnx = Path(args.onnx)
    if not onnx.is_file():
        raise HarnessError(f"{onnx}: ONNX model not found")
    _, num_seg, size = model_input(ModelArtifacts(paddle_model=model, onnx=onnx))
    pre = PreprocessConfig.for_size(num_seg or 8, size or 224)
    cache = ArtifactCache(args.cache) if args.cache else ArtifactCache()
    target = cached_fp16(onnx, cache) if args.backend == "onnxruntime-fp16" else onnx
    worst = None
    for clip in load_clips(args.clips):  # the clip whose final outputs differ most
        try:
            x = load_clip_tensor(clip.path, pre, clip.num_frames)
        except ClipError as exc:
            _say(f"  skipped clip: {exc}")
            continue
        diagnosis = localize(model, target, x, args.backend, args.against, str(clip.path), BACKENDS[args.backend].precision)
        final = diagnosis.curve[-1]["error"] if diagnosis.curve else 0.0
        if worst is None or final > worst[0]:
            worst = (final, diagnosis)
    if worst is None:
        raise HarnessError(f"{args.clips}: no readable clip")
    diagnosis = worst[1]
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
    from .backends import ModelArtifacts
    from .clips import load_clips
    from .inputs import prepare_inputs
    from .preprocess import PreprocessConfig
    from .run import model_input

    if not onnx.is_file():
        raise HarnessError(f"{onnx}: ONNX model not found")
    _, num_seg, size = model_input(ModelArtifacts(onnx=onnx))
    pre = PreprocessConfig.for_size(num_seg or 8, size or 224)
    items = prepare_inputs(load_clips(clips), pre)
    for item in items:
        if not item.ok:
            _say(f"  skipped clip: {item.error}")
    tensors = [i.tensor for i in items if i.ok][:limit]
    if not tensors:
        raise HarnessError(f"{clips}: no readable clip")
    return tensors, pre


def cmd_advise(args) -> int:
    import json

    from .artifacts import PaddleModel
    from .precision.advise import advise, write_settings
    from .precision.int8 import calibration_tensors

    onnx = Path(args.onnx)
    tensors, pre = _model_tensors(onnx, args.clips)
    calibration = calibration_tensors(args.calibration or args.clips, pre)[0] if args.precision == "int8" else None
    model = PaddleModel.locate(args.paddle_model) if args.paddle_model else None
    advice = advise(onnx, tensors, args.precision, calibration=calibration, paddle_model=model)
    if args.out:
        for path in write_settings(advice, onnx, Path(args.out)):
            _say(f"wrote {path}")
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


def cmd_tolerances(args) -> int:
    from .artifacts import ArtifactCache, PaddleModel
    from .precision.tolerances import measure

    model = PaddleModel.locate(args.paddle_model)
    cache = ArtifactCache(args.cache) if args.cache else ArtifactCache()
    proposal = measure(model, Path(args.onnx), args.clips, cache, args.factor, args.calibration)
    try:
        Path(args.out).write_text(proposal.config_text)
    except OSError as exc:
        raise HarnessError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    for line in proposal.lines:
        print(line)
    print(f"wrote {args.out}: run the gate with `parity run --config {args.out}` or `pytest --parity-config {args.out}`")
    return EXIT_PASS


def cmd_schema(args) -> int:
    import json

    from .schema import results_schema

    print(json.dumps(results_schema(), indent=2))
    return EXIT_PASS


def cmd_compare_releases(args) -> int:
    from .baseline import compare_releases

    print(compare_releases(args.folders), end="")
    return EXIT_PASS


def cmd_merge(args) -> int:
    from .merge import merge_reports

    result = merge_reports(args.shards, args.report)
    return _finish(result, args.report, args.summary_md)


def cmd_golden(args) -> int:
    from . import golden

    folder = golden.save(args.report_dir, args.to)
    meta = golden.Golden.load(folder).meta
    print(f"saved golden outputs of {meta['reference']} for {len(meta['clips'])} clips to {folder}")
    return EXIT_PASS


def cmd_convert(args) -> int:
    from .artifacts import PaddleModel, convert_to_onnx

    record = convert_to_onnx(PaddleModel.locate(args.paddle_model), args.out, opset=args.opset, repair=not args.no_repair)
    for repair in record.repairs:
        print(f"repaired: {repair}")
    print(f"wrote {record.onnx} (opset {record.opset}, paddle2onnx {record.paddle2onnx_version}; checker {record.checker}; ONNX Runtime session {record.ort_session})")
    return EXIT_PASS


def cmd_backends(args) -> int:
    import json

    from .backends import BACKENDS

    rows = []
    for b in BACKENDS.values():
        reason = b.availability()
        rows.append({"name": b.name, "available": reason is None, "reason": reason, "precision": b.precision,
                     "device": b.device, "description": b.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_PASS
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else r["reason"]
        print(f"{r['name']:<{width}}  {r['device']:<3}  {r['precision']}  {state}")
    return EXIT_PASS


def cmd_build(args) -> int:
    import shutil

    from .artifacts import ArtifactCache
    from .backends import BACKENDS, ModelArtifacts
    from .run import model_input

    backend = BACKENDS[f"tensorrt-{args.precision}"]
    reason = backend.availability()
    if reason:
        raise HarnessError(f"cannot build a TensorRT engine here: {reason}")
    from .backends.tensorrt import build_engine, engine_spec

    onnx = Path(args.onnx)
    if not onnx.is_file():
        raise HarnessError(f"{onnx}: ONNX model not found")
    name, num_seg, size = model_input(ModelArtifacts(onnx=onnx))
    spec = engine_spec(onnx, args.precision, name, num_seg or 8, size or 224, args.batch)
    engine = build_engine(onnx, spec, ArtifactCache(args.cache) if args.cache else ArtifactCache())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for f in (engine, engine.with_name(engine.name + ".json")):
            shutil.copy2(f, out / f.name)
        engine = out / engine.name
    print(f"engine: {engine} (TensorRT {spec.tensorrt_version}, {spec.gpu}, {spec.precision}, batch 1..{args.batch})")
    return EXIT_PASS


def cmd_preprocess(args) -> int:
    import numpy as np

    from .preprocess import ClipError, load_clip_tensor

    cfg = _preprocess_settings(args)
    if args.clips:
        return _preprocess_all(args, cfg)
    if not args.source or not args.output:
        raise HarnessError("parity preprocess: give SOURCE -o OUT.npy, or --clips LIST --out DIR")
    try:
        tensor = load_clip_tensor(args.source, cfg)
    except ClipError as exc:
        raise HarnessError(str(exc)) from None
    np.save(args.output, tensor)
    print(f"wrote {args.output}: float32 {list(tensor.shape)} ({args.variant} preprocessing)")
    return EXIT_PASS


def _preprocess_settings(args):
    """T and sizes from the model when one is given (flags must agree), else the flags, else PP-TSM's defaults, said."""
    from .artifacts import PaddleModel
    from .backends import ModelArtifacts
    from .preprocess import PreprocessConfig
    from .run import _agree, model_input

    num_seg, size = args.num_seg, args.target_size
    if args.onnx or args.paddle_model:
        if args.onnx and not Path(args.onnx).is_file():
            raise HarnessError(f"{args.onnx}: ONNX model not found")
        art = ModelArtifacts(paddle_model=PaddleModel.locate(args.paddle_model) if args.paddle_model else None,
                             onnx=Path(args.onnx) if args.onnx else None)
        _, model_t, model_size = model_input(art)
        where = args.onnx or args.paddle_model
        num_seg, size = _agree("--num-seg", num_seg, model_t, where), _agree("--target-size", size, model_size, where)
    defaults = [f"{name} {value}" for name, value, given in (("T", 8, num_seg), ("crop", 224, size)) if given is None]
    if defaults:
        _say(f"parity preprocess: no model given (--onnx or --paddle-model), so PP-TSM's defaults: {', '.join(defaults)}")
    try:
        return PreprocessConfig.for_size(num_seg or 8, size or 224, args.short_size, args.variant)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None


def _preprocess_all(args, cfg) -> int:
    """Every clip's tensor, a manifest (clip, label, sha256, tensor) and an --inputs list: the harness's exact inputs, to take away."""
    import json

    import numpy as np

    from .clips import load_clips
    from .inputs import decode_clip

    if not args.out:
        raise HarnessError("parity preprocess --clips: give --out DIR")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{out}: cannot write there: {exc.strerror or exc}") from None
    manifest, lines = [], []
    for i, clip in enumerate(load_clips(args.clips)):
        item = decode_clip(clip, cfg, i)
        entry = {"clip": str(clip.path), "label": clip.label, "sha256": item.sha256, "tensor": None, "error": item.error}
        if item.ok:
            name = f"{i:05d}_{clip.path.stem[:60]}.npy"
            np.save(out / name, item.tensor)
            entry["tensor"] = name
            lines.append(f"{name} {clip.label}" if clip.label is not None else name)
        else:
            _say(f"  skipped clip: {item.error}")
        manifest.append(entry)
    (out / "manifest.json").write_text(json.dumps({"preprocess": cfg.to_dict(), "clips": manifest}, indent=2))
    (out / "list.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} tensors, manifest.json and list.txt (for --inputs) to {out}")
    return EXIT_PASS


def cmd_export(args) -> int:
    from .artifacts import export_inference_model
    from .checkpoint import load_checkpoint
    from .models import ModelSpec, build_model

    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        raise HarnessError(f"--depths {args.depths!r}: expected four integers like 2,2,6,2") from None
    spec = ModelSpec(
        arch=args.arch,
        num_classes=args.num_classes,
        num_seg=args.num_seg,
        size=args.size,
        scale=args.scale,
        depths=depths,
        class_expand=args.class_expand,
        temporal_attention=args.temporal_attention,
    )
    model = build_model(spec)
    load_checkpoint(model, args.weights)
    exported = export_inference_model(model, spec.num_seg, spec.size, args.out)
    print(f"wrote {exported.model_file} + {exported.params_file.name} ({exported.format}; input data_batch_0 [None, {spec.num_seg}, 3, {spec.size}, {spec.size}])")
    return EXIT_PASS


def cmd_demo(args) -> int:
    from . import demo
    from .artifacts import ArtifactCache
    from .config import RunConfig
    from .run import run

    start = time.time()
    cache = ArtifactCache(args.cache) if args.cache else ArtifactCache()
    out = Path(args.out)
    _say(f"parity demo: building artifacts (cache {cache.root})")
    art = demo.build_all(cache)
    _say(f"  trained PP-TSMv2 ({art.training['steps']} steps): validation top-1 {art.training['val_top1']:.3f}")
    paths = demo.publish(art, out)
    cfg = RunConfig(paddle_model=str(paths["paddle_model"]), onnx=str(paths["onnx"]), clips=str(paths["clips"]), report=str(out))
    result = run(cfg, cache=cache)
    result.training = art.training
    conversion = paths["onnx"].with_suffix(".conversion.json")
    if conversion.is_file():
        import json

        result.artifacts["conversion"] = json.loads(conversion.read_text())
    code = _finish(result, out)
    min_top1 = demo.DemoSettings().min_val_top1
    if art.training["val_top1"] < min_top1:
        _say(f"parity demo: the model did not learn (validation top-1 {art.training['val_top1']:.3f} < {min_top1})")
        code = max(code, EXIT_FAIL)
    _say(f"parity demo: done in {time.time() - start:.0f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
