"""The harness at release-set scale against a hand-written loop, on full-size PP-TSMv2 (16 x 224, LTA, 101 classes).

    python benchmarks/scale.py [--clips 40] [--backends paddle,onnxruntime] [--schedule auto] [--out /tmp/parity-scale] [--no-loop]

One script, one run, one machine. It exports the model with random weights (timings and memory
do not depend on the weights), converts it with paddle2onnx, writes real H.264 videos at
640x272, 1280x720 and 176x144, and prints:

- seconds per clip of ``parity run`` (``--backends``, default paddle, onnxruntime, onnxruntime-fp16) against a
  hand-written loop doing the same work: the same preprocessing, the same Paddle mode, the same
  ONNX Runtime sessions, called directly one clip after another. The harness's per-clip cost is
  its marginal cost between N and 4N clips; its start-up (model loads, the report) is shown apart.
  The 4N run chooses its schedule itself (``--schedule auto``, from the costs a 50-clip warm-up run measured and
  cached, and a trial on its first clips); the N run is told the same kind, so the difference is one schedule's;
- the limit beside it: every clip's single-thread work over the cores, (sum of each backend's latency alone at
  1 thread + the decode's core-seconds per clip) / cores, measured in this run (each backend alone in its own
  process, pinned to one core; the decode's CPU time over the three videos), and the ratio of the harness to it;
- each backend's p50 latency inside the 4N run against its latency alone at the thread count the schedule gave it;
- peak RSS of the harness process at N and at 4N clips;
- decode throughput at 1 worker and at every core.

Numbers are for the machine it runs on; the README quotes one run with its CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
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
from parity.schedule import passive_wait
passive_wait()  # as the CLI does at start, before Paddle loads
result = run(RunConfig(**json.loads(sys.argv[1])), cache=ArtifactCache(sys.argv[2]))
write_report(result, result.config["report"])
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "clips": len(result.clips), "verdict": result.verdict,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "decoded": result.run["decode"]["decoded"], "schedule": result.run.get("schedule"),
                  "p50_ms": {b.name: b.latency_summary().get("p50_ms") for b in result.backends}}))
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


def harness(model, onnx, listing: Path, cache, report: Path, backends: list[str], schedule: str = "auto") -> dict:
    cfg = {"paddle_model": str(model.model_file), "onnx": str(onnx), "clips": str(listing), "report": str(report),
           "backends": backends, "schedule": schedule}
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
    from parity.machine import cpu_count
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


def alone(model, onnx, cache, backends: list[str], videos: list[Path], cores: int) -> dict:
    """Each backend alone in its own process: seconds per clip at 1 thread (pinned to one core) and at every core;
    the decode's core-seconds per clip (CPU time, averaged over the three videos)."""
    from parity.config import RunConfig
    from parity.engines.costs import _time
    from parity.preprocess import PreprocessConfig, load_clip_tensor
    from parity.run.plan import open_models

    pre = PreprocessConfig.for_size(16, 224)
    cpu, tensors = [], []
    for video in videos:
        start = time.process_time()
        tensors.append(load_clip_tensor(video, pre))
        cpu.append(time.process_time() - start)
    art, _ = open_models(RunConfig(paddle_model=str(model.model_file), onnx=str(onnx), clips=str(videos[0].parent)), cache)
    out = {"decode": float(np.mean(cpu))}
    for name in backends:
        feed = {art.input_names[0]: tensors[0]}
        one, _ = _time(name, dataclasses.replace(art, threads=1), feed, (0,), None)
        every, _ = _time(name, dataclasses.replace(art, threads=cores), feed, (), None)
        out[name] = {"one": one, "every": every}
    return out


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
    parser.add_argument("--backends", default="paddle,onnxruntime,onnxruntime-fp16")
    parser.add_argument("--schedule", default="auto", choices=("auto", "turns", "lanes"),
                        help="auto: the 4N run chooses, the N run is told its kind; else both runs use this one")
    parser.add_argument("--no-loop", action="store_true", help="skip the hand-written loop and the decode throughput")
    args = parser.parse_args()
    backends = args.backends.split(",")
    from parity.machine import cpu_count, cpu_features, cpu_name

    out = Path(args.out)
    n = args.clips
    cache, model, onnx = build(out)
    small, large = write_videos(out, n), write_videos(out, 4 * n)
    cores = cpu_count()
    print(f"machine: {cpu_name()} ({' '.join(cpu_features())}), {cores} cores, load average {os.getloadavg()[0]:.1f}; PP-TSMv2 16x224 LTA, 101 classes; "
          f"backends {', '.join(backends)}")
    # the warm-up builds the FP16 model and the Paddle mode probe; under auto it also measures the schedule's costs
    # (cached per machine, models and backends: a one-time cost, not a clip's), which auto does from 50 clips
    from parity.engines.costs import PROBE_MIN_CLIPS

    auto = args.schedule == "auto"
    harness(model, onnx, write_videos(out, PROBE_MIN_CLIPS if auto else 3), cache, out / "warm", backends, "auto" if auto else "turns")
    at_4n = harness(model, onnx, large, cache, out / "report-4n", backends, args.schedule)  # auto: chooses (and measures)
    kind = (at_4n["schedule"] or {}).get("kind", "turns")
    at_n = harness(model, onnx, small, cache, out / "report-n", backends, kind)
    per_clip = (at_4n["wall"] - at_n["wall"]) / (3 * n)
    startup = at_n["wall"] - n * per_clip
    base = alone(model, onnx, cache, backends, sorted((out / "videos").glob("src_*.mp4")), cores)
    bound = (sum(base[b]["one"] for b in backends) + base["decode"]) / cores
    sched = at_4n["schedule"] or {}
    print(f"\nschedule of the {4 * n}-clip run: {sched.get('kind')} "
          f"{[(g['lanes'], g['threads']) for g in sched.get('groups', [])]}, {sched.get('workers')} decode workers; "
          f"predicted {sched.get('predicted')} s/clip, turns {sched.get('turns')} ({sched.get('measured', 'not measured')}); "
          f"trial on the first clips: {sched.get('trial')}")
    print(f"\n{'':<28}{'s/clip':>10}{'start-up s':>12}")
    print(f"{'parity run (harness)':<28}{per_clip:>10.3f}{startup:>12.1f}")
    print(f"{'limit':<28}{bound:>10.3f}{'':>12}   (sum of single-thread latencies alone + decode {base['decode']:.3f} "
          f"core-s, over {cores} cores)")
    print(f"ratio harness / limit: {per_clip / bound:.2f}")
    threads = {name: g["threads"] for g in sched.get("groups", []) for name in g["lanes"]} if kind == "lanes" else {}
    # (a trial's clips run under both schedules: the p50 is mostly, not only, the kept one's)
    for name in backends:
        t = threads.get(name, cores)
        solo = base[name]["one"] if t == 1 else base[name]["every"]
        p50 = (at_4n["p50_ms"].get(name) or float("nan")) / 1000
        print(f"  {name:<22} alone {base[name]['one']:.3f} s at 1 thread, {base[name]['every']:.3f} at {cores}; "
              f"in the run (p50, {t} thread{'s' if t > 1 else ''}) {p50:.3f}: {p50 / solo:.2f}x its latency alone")
    if not args.no_loop:
        loop = hand_loop(model, onnx, small, cache)
        print(f"{'hand-written loop':<28}{loop['per_clip']:>10.3f}{loop['setup']:>12.1f}")
    print(f"\npeak RSS of the run: {at_n['rss_mib']:.0f} MiB at {n} clips, {at_4n['rss_mib']:.0f} MiB at {4 * n} clips "
          f"(+{at_4n['rss_mib'] - at_n['rss_mib']:.0f} MiB); largest child process {at_4n['children_rss_mib']:.0f} MiB")
    print(f"clips decoded: {at_n['decoded']} of {at_n['clips']}, {at_4n['decoded']} of {at_4n['clips']}; verdicts {at_n['verdict']}, {at_4n['verdict']}")
    if not args.no_loop:
        one, every = decode_throughput(small, 1), decode_throughput(small, cpu_count())
        print(f"decode throughput: {one:.2f} clips/s at 1 worker, {every:.2f} clips/s at {cpu_count()} workers")


if __name__ == "__main__":
    main()
