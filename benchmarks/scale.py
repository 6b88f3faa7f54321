"""The harness at release-set scale against a hand-written loop, on full-size PP-TSMv2 (16 x 224, LTA, 101 classes).

    python benchmarks/scale.py [--clips 40] [--out /tmp/parity-scale]

One script, one run, one machine. It exports the model with random weights (timings and memory
do not depend on the weights), converts it with paddle2onnx, writes real H.264 videos at
640x272, 1280x720 and 176x144, and prints:

- seconds per clip of ``parity run`` (paddle, onnxruntime, onnxruntime-fp16) against a
  hand-written loop doing the same work: the same preprocessing, the same Paddle mode, the same
  ONNX Runtime sessions, called directly one clip after another. The harness's per-clip cost is
  its marginal cost between N and 4N clips; its start-up (model loads, the report) is shown apart;
- peak RSS of the harness process at N and at 4N clips;
- decode throughput at 1 worker and at every core.

Numbers are for the machine it runs on; the README quotes one run with its CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_RUN = """
import json, resource, sys, time
from parity.artifacts import ArtifactCache
from parity.config import RunConfig
from parity.run import run
from parity.report import write_report
start = time.perf_counter()
result = run(RunConfig(**json.loads(sys.argv[1])), cache=ArtifactCache(sys.argv[2]))
write_report(result, result.config["report"])
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "clips": len(result.clips), "verdict": result.verdict,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "decoded": result.run["decode"]["decoded"]}))
"""


def build(out: Path):
    import paddle

    from parity.artifacts import ArtifactCache, convert_to_onnx, export_inference_model
    from parity.diagnose.lint import review
    from parity.models import ModelSpec, build_model

    cache = ArtifactCache(out / "cache")
    spec = ModelSpec(arch="pptsm_v2", num_classes=101, num_seg=16, size=224, temporal_attention=True)
    paddle.seed(0)
    model = export_inference_model(build_model(spec), spec.num_seg, spec.size, out / "model" / "ppTSMv2")
    onnx = out / "model" / "ppTSMv2.onnx"
    if not onnx.is_file():
        convert_to_onnx(model, onnx, review=review)
    return cache, model, onnx


def write_videos(out: Path, n: int) -> Path:
    """Three real H.264 videos (640x272, 1280x720, 176x144), listed ``n`` times under their own names."""
    from parity import synth

    folder = out / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = []
    for w, h in ((640, 272), (1280, 720), (176, 144)):
        path = folder / f"src_{w}x{h}.mp4"
        if not path.is_file():
            spec = synth.SynthSpec(frames=75, width=w, height=h, object_size=max(16, h // 6))
            synth.write_video(path, synth.render_clip(rng, (1, 0), spec), "libx264", "yuv420p")
        sources.append(path)
    lines = []
    for i in range(n):
        dst = folder / f"clip_{i:05d}.mp4"
        if not dst.exists():
            os.link(sources[i % 3], dst)
        lines.append(f"{dst.name} {i % 101}")
    listing = folder / f"list_{n}.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def harness(model, onnx, listing: Path, cache, report: Path) -> dict:
    cfg = {"paddle_model": str(model.model_file), "onnx": str(onnx), "clips": str(listing), "report": str(report)}
    proc = subprocess.run([sys.executable, "-c", _RUN, json.dumps(cfg), str(cache.root)], capture_output=True, text=True,
                          env={**os.environ, "PARITY_PROGRESS": "0", "GLOG_minloglevel": "2"})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hand_loop(model, onnx, listing: Path, cache) -> dict:
    """What a user would write: decode, then each runtime, one clip after another."""
    import onnxruntime as ort
    from paddle import inference

    from parity.artifacts import cached_fp16
    from parity.backends.paddle_inference import fast_cpu_mode, make_config
    from parity.clips import load_clips
    from parity.env import cpu_count
    from parity.preprocess import PreprocessConfig, load_clip_tensor

    threads = cpu_count()
    start = time.perf_counter()
    predictor = inference.create_predictor(make_config(model, threads, fast_cpu_mode(model, cache)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (onnx, cached_fp16(onnx, cache))]
    setup = time.perf_counter() - start
    pre = PreprocessConfig.for_size(16, 224)
    clips = load_clips(listing)
    start = time.perf_counter()
    for clip in clips:
        x = load_clip_tensor(clip.path, pre)
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(x)
        predictor.run()
        predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
        for sess in sessions:
            sess.run(None, {sess.get_inputs()[0].name: x})
    return {"setup": setup, "per_clip": (time.perf_counter() - start) / len(clips)}


def decode_throughput(listing: Path, workers: int) -> float:
    from parity.clips import load_clips
    from parity.preprocess import PreprocessConfig
    from parity.stream import decode_stream

    clips = list(enumerate(load_clips(listing)))
    start = time.perf_counter()
    for _ in decode_stream(clips, PreprocessConfig.for_size(16, 224), workers):
        pass
    return len(clips) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40, help="N (the memory check also runs 4N)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "parity-scale"))
    args = parser.parse_args()
    from parity.env import cpu_count, cpu_name

    out = Path(args.out)
    n = args.clips
    cache, model, onnx = build(out)
    small, large = write_videos(out, n), write_videos(out, 4 * n)
    print(f"machine: {cpu_name()}, {cpu_count()} cores; PP-TSMv2 16x224 LTA, 101 classes; backends paddle, onnxruntime, onnxruntime-fp16")
    harness(model, onnx, write_videos(out, 3), cache, out / "warm")  # builds the FP16 model and the Paddle mode probe
    at_n = harness(model, onnx, small, cache, out / "report-n")
    at_4n = harness(model, onnx, large, cache, out / "report-4n")
    loop = hand_loop(model, onnx, small, cache)
    per_clip = (at_4n["wall"] - at_n["wall"]) / (3 * n)
    startup = at_n["wall"] - n * per_clip
    print(f"\n{'':<28}{'s/clip':>10}{'start-up s':>12}")
    print(f"{'parity run (harness)':<28}{per_clip:>10.3f}{startup:>12.1f}")
    print(f"{'hand-written loop':<28}{loop['per_clip']:>10.3f}{loop['setup']:>12.1f}")
    print(f"\npeak RSS of the run: {at_n['rss_mib']:.0f} MiB at {n} clips, {at_4n['rss_mib']:.0f} MiB at {4 * n} clips "
          f"(+{at_4n['rss_mib'] - at_n['rss_mib']:.0f} MiB); largest child process {at_4n['children_rss_mib']:.0f} MiB")
    print(f"clips decoded: {at_n['decoded']} of {at_n['clips']}, {at_4n['decoded']} of {at_4n['clips']}; verdicts {at_n['verdict']}, {at_4n['verdict']}")
    one, every = decode_throughput(small, 1), decode_throughput(small, cpu_count())
    print(f"decode throughput: {one:.2f} clips/s at 1 worker, {every:.2f} clips/s at {cpu_count()} workers")


if __name__ == "__main__":
    main()
