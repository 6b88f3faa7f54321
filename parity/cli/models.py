"""Commands that make things: demo, export, convert, build (a TensorRT engine), preprocess (the exact input tensors)."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .. import demo, pvconfig
from ..artifacts import ArtifactCache, PaddleModel, convert_to_onnx, export_inference_model
from ..artifacts.model_files import model_input, model_inputs
from ..backends import BACKENDS, ModelArtifacts, tensorrt
from ..checkpoint import load_checkpoint
from ..clips import load_clips
from ..config import ARCHS, RunConfig
from ..diagnose.lint import review
from ..errors import HarnessError
from ..helper_inputs import arrays_of, recipe_tensor
from ..inputs import decode_clip
from ..models import ModelSpec, build_model
from ..preprocess import VARIANTS, ClipError, PreprocessConfig, load_clip_tensor
from ..run import agree, run
from .common import EXIT_FAIL, EXIT_PASS, finish, say


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="generate clips, train, export, convert and compare a small PP-TSMv2")
    p.add_argument("--out", default="reports/demo", help="report and artifact folder (default reports/demo)")
    p.add_argument("--cache", help="artifact cache folder (default $PARITY_CACHE_DIR or ~/.cache/pptsm-parity)")


def cmd_demo(args) -> int:
    start = time.time()
    cache = ArtifactCache(args.cache) if args.cache else ArtifactCache()
    out = Path(args.out)
    say(f"parity demo: building artifacts (cache {cache.root})")
    art = demo.build_all(cache)
    say(f"  trained PP-TSMv2 ({art.training['steps']} steps): validation top-1 {art.training['val_top1']:.3f}")
    paths = demo.publish(art, out)
    cfg = RunConfig(paddle_model=str(paths["paddle_model"]), onnx=str(paths["onnx"]), clips=str(paths["clips"]), report=str(out))
    result = run(cfg, cache=cache)
    result.training = art.training
    conversion = paths["onnx"].with_suffix(".conversion.json")
    if conversion.is_file():
        result.artifacts["conversion"] = json.loads(conversion.read_text())
    code = finish(result, out)
    min_top1 = demo.DemoSettings().min_val_top1
    if art.training["val_top1"] < min_top1:
        say(f"parity demo: the model did not learn (validation top-1 {art.training['val_top1']:.3f} < {min_top1})")
        code = max(code, EXIT_FAIL)
    say(f"parity demo: done in {time.time() - start:.0f}s")
    return code


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a PaddleVideo checkpoint as a Paddle inference model, as PaddleVideo's export does")
    p.add_argument("--arch", choices=ARCHS, default="pptsm_v2")
    p.add_argument("--weights", required=True, help="checkpoint .pdparams (any PaddleVideo prefix form)")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--num-seg", type=int, default=8)
    p.add_argument("--temporal-attention", action=argparse.BooleanOptionalAction, default=False,
                   help="PP-TSMv2 with LTA (GlobalAttention; default off, as PaddleVideo)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--scale", type=float, default=1.0, help="PP-TSMv2 width multiplier (default 1.0)")
    p.add_argument("--depths", default="2,2,6,2", help="PP-TSMv2 blocks per stage (default 2,2,6,2)")
    p.add_argument("--class-expand", type=int, default=1280, help="PP-TSMv2 last conv width (default 1280)")
    p.add_argument("--out", required=True, help="output prefix DIR/NAME")


def cmd_export(args) -> int:
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        raise HarnessError(f"--depths {args.depths!r}: expected four integers like 2,2,6,2") from None
    spec = ModelSpec(arch=args.arch, num_classes=args.num_classes, num_seg=args.num_seg, size=args.size, scale=args.scale,
                     depths=depths, class_expand=args.class_expand, temporal_attention=args.temporal_attention)
    model = build_model(spec)
    load_checkpoint(model, args.weights)
    exported = export_inference_model(model, spec.num_seg, spec.size, args.out)
    print(f"wrote {exported.model_file} + {exported.params_file.name} ({exported.format}; input data_batch_0 [None, {spec.num_seg}, 3, {spec.size}, {spec.size}])")
    return EXIT_PASS


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a Paddle inference model to ONNX with paddle2onnx, repairing known defects")
    p.add_argument("--paddle-model", required=True)
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=11)
    p.add_argument("--no-repair", action="store_true", help="keep paddle2onnx's output as it is")


def cmd_convert(args) -> int:
    record = convert_to_onnx(PaddleModel.locate(args.paddle_model), args.out, opset=args.opset, repair=not args.no_repair,
                             review=review)
    for repair in record.repairs:
        print(f"repaired: {repair}")
    print(f"wrote {record.onnx} (opset {record.opset}, paddle2onnx {record.paddle2onnx_version}; checker {record.checker}; ONNX Runtime session {record.ort_session})")
    return EXIT_PASS


def add_build(sub) -> None:
    p = sub.add_parser("build", help="prebuild a TensorRT engine from an ONNX model (needs a GPU and tensorrt)")
    p.add_argument("--onnx", required=True)
    p.add_argument("--precision", choices=["fp32", "fp16"], required=True)
    p.add_argument("--batch", type=int, default=1, help="largest batch of the optimization profile (default 1)")
    p.add_argument("--out", help="copy the engine (and its .json sidecar) into this folder")
    p.add_argument("--cache", help="artifact cache folder")


def cmd_build(args) -> int:
    backend = BACKENDS[f"tensorrt-{args.precision}"]
    reason = backend.availability()
    if reason:
        raise HarnessError(f"cannot build a TensorRT engine here: {reason}")
    onnx = Path(args.onnx)
    if not onnx.is_file():
        raise HarnessError(f"{onnx}: ONNX model not found")
    name, num_seg, size = model_input(ModelArtifacts(onnx=onnx))
    spec = tensorrt.engine_spec(onnx, args.precision, name, num_seg or 8, size or 224, args.batch)
    engine = tensorrt.build_engine(onnx, spec, ArtifactCache(args.cache) if args.cache else ArtifactCache())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for f in (engine, engine.with_name(engine.name + ".json")):
            shutil.copy2(f, out / f.name)
        engine = out / engine.name
    print(f"engine: {engine} (TensorRT {spec.tensorrt_version}, {spec.gpu}, {spec.precision}, batch 1..{args.batch})")
    return EXIT_PASS


def add_preprocess(sub) -> None:
    p = sub.add_parser("preprocess", help="write the exact float32 [1, T, 3, H, W] tensors the harness feeds the model")
    p.add_argument("source", nargs="?", help="a video file or a UCF101 frame folder (img_00001.jpg, ...)")
    p.add_argument("-o", "--output", help="output .npy (with SOURCE); another helper's (--pv-config): OUT.npy for a one-input "
                   "model, OUT.npz with one array per input (the model's input names with --onnx/--paddle-model, else input_0..)")
    p.add_argument("--clips", help="a clip list or folder: every clip's tensor into --out, with a manifest, for a device without Python")
    p.add_argument("--out", help="output folder (with --clips)")
    p.add_argument("--onnx", help="read T and the crop size from this ONNX model (flags that disagree are errors)")
    p.add_argument("--paddle-model", help="read T and the crop size from this exported Paddle model")
    p.add_argument("--pv-config", metavar="CONFIG.yaml", help="your PaddleVideo config: T and sizes from its INFERENCE "
                   "(ppTSM_Inference_helper); --num-seg/--short-size/--target-size override it")
    p.add_argument("--num-seg", type=int, help="segments T (default: the model's, else 8)")
    p.add_argument("--short-size", type=int, help="Scale short side (default: crop size x 256/224)")
    p.add_argument("--target-size", type=int, help="CenterCrop size (default: the model's, else 224)")
    p.add_argument("--variant", choices=VARIANTS, default="paddlevideo", help="paddlevideo: predict.py's path (default); cpp: the C++ deploy path")


def cmd_preprocess(args) -> int:
    applied = pvconfig.apply(args)  # read once; every step below takes this one
    if applied is not None and applied.config.helper != pvconfig.PPTSM:
        return _preprocess_helper(args, applied)
    cfg = _preprocess_settings(args, applied)
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


def _preprocess_helper(args, applied) -> int:
    """Another helper's input, exactly as the model takes it: one array per model input, in the model's order."""
    say(applied.line())
    recipe = applied.recipe
    if args.clips:
        raise HarnessError(f"parity preprocess --clips: {recipe.helper}'s inputs are written one clip at a time: give SOURCE -o OUT")
    if not args.source or not args.output:
        raise HarnessError("parity preprocess: give SOURCE -o OUT (.npy for a one-input model, .npz for several)")
    names = None
    if args.onnx or args.paddle_model:
        if args.onnx and not Path(args.onnx).is_file():
            raise HarnessError(f"{args.onnx}: ONNX model not found")
        art = ModelArtifacts(paddle_model=PaddleModel.locate(args.paddle_model) if args.paddle_model else None,
                             onnx=Path(args.onnx) if args.onnx else None)
        names = [i.name for i in model_inputs(art, tuple(recipe.layouts))]
        applied.check_classes(art)
    if not Path(args.source).exists():
        raise HarnessError(f"{args.source}: file not found")
    try:
        arrays = list(arrays_of(recipe_tensor(recipe, Path(args.source))))
    except Exception as exc:  # a decoder's own exception types: one line naming the clip
        raise HarnessError(f"{args.source}: cannot decode: {' '.join(str(exc).split())[:300]}") from None
    names = names or [f"input_{i}" for i in range(len(arrays))]
    out = Path(args.output)
    if out.suffix == ".npy" and len(arrays) > 1:
        raise HarnessError(f"{out}: {recipe.helper}'s model takes {len(arrays)} inputs ({', '.join(names)}); write an .npz")
    if out.suffix == ".npz" or len(arrays) > 1:
        out = out if out.suffix == ".npz" else out.with_name(out.name + ".npz")
        np.savez(out, **dict(zip(names, arrays)))
    else:
        out = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")
        np.save(out, arrays[0])
    shapes = ", ".join(f"{n} float32 {list(a.shape)}" for n, a in zip(names, arrays))
    print(f"wrote {out}: {shapes} ({recipe.helper})")
    return EXIT_PASS


def _preprocess_settings(args, pv: pvconfig.Applied | None) -> PreprocessConfig:
    """T and sizes from a --pv-config (``pv``: applied, flags over it), the model when one is given (they must agree), else
    the flags, else PP-TSM's defaults, said."""
    num_seg, size, short_size = args.num_seg, args.target_size, args.short_size
    if pv is not None:
        say(pv.line())
        num_seg, short_size, size = pv.pptsm_settings()
    flag = pv.flag if pv is not None else pvconfig.OVERRIDE_FLAGS.get
    if args.onnx or args.paddle_model:
        if args.onnx and not Path(args.onnx).is_file():
            raise HarnessError(f"{args.onnx}: ONNX model not found")
        art = ModelArtifacts(paddle_model=PaddleModel.locate(args.paddle_model) if args.paddle_model else None,
                             onnx=Path(args.onnx) if args.onnx else None)
        _, model_t, model_size = model_input(art)
        where = args.onnx or args.paddle_model
        num_seg, size = agree(flag("num_seg"), num_seg, model_t, where), agree(flag("target_size"), size, model_size, where)
        if pv is not None:
            pv.check_classes(art)
    defaults = [f"{name} {value}" for name, value, given in (("T", 8, num_seg), ("crop", 224, size)) if given is None]
    if defaults:
        say(f"parity preprocess: no model given (--onnx or --paddle-model), so PP-TSM's defaults: {', '.join(defaults)}")
    try:
        return PreprocessConfig.for_size(num_seg or 8, size or 224, short_size, args.variant)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None


def _preprocess_all(args, cfg: PreprocessConfig) -> int:
    """Every clip's tensor, a manifest (clip, label, sha256, tensor) and an --inputs list: the harness's exact inputs, to take away."""
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
            say(f"  skipped clip: {item.error}")
        manifest.append(entry)
    (out / "manifest.json").write_text(json.dumps({"preprocess": cfg.to_dict(), "clips": manifest}, indent=2))
    (out / "list.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} tensors, manifest.json and list.txt (for --inputs) to {out}")
    return EXIT_PASS


COMMANDS = {"demo": (add_demo, cmd_demo), "export": (add_export, cmd_export), "convert": (add_convert, cmd_convert),
            "build": (add_build, cmd_build), "preprocess": (add_preprocess, cmd_preprocess)}
