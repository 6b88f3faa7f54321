"""The GPU box, planned on paper: the schedule the harness would choose on a 16-core machine with one GPU, and the time for
UCF101's test split over the five GPU backends plus the Paddle reference. No GPU was used: the numbers are below, each
with where it comes from.

    python benchmarks/gpu_plan.py [--cores 16] [--decode 0.38] [--paddle-one 0.345 --paddle-two 0.196]

The chooser is the harness's own (``parity.schedule.choose``), fed the same kind of measurements a run takes
(each backend's seconds per clip at 1 thread and at every core, the decode's core-seconds per clip);
``tests/test_schedule.py::test_gpu_box_plan_gives_paddle_part_of_the_cores_and_decodes_on_the_rest`` checks the choice.

Sources (full-size PP-TSMv2, 16 frames, 224):

* **measured here** (2-core AMD EPYC, no AVX-512; ``benchmarks/scale.py``): decode + PaddleVideo's preprocessing, core-seconds
  per clip; Paddle Inference (oneDNN) at 1 and 2 threads. On the 16-core box, Paddle's latency at 16 threads follows
  Amdahl's law fitted to those two points (its parallel fraction; the box's own cores are not this one's);
* **published**: PaddleVideo's benchmark (https://github.com/PaddlePaddle/PaddleVideo/blob/develop/docs/en/benchmark.md,
  Tesla V100 16G, Paddle Inference 2.3.1, CUDA 10.2, cuDNN 8.1.1): PP-TSMv2 16f inference **7.55 ms**, preprocessing
  69.4 ms; on a Xeon Gold 6148 with MKLDNN (https://github.com/PaddlePaddle/PaddleVideo/blob/develop/docs/zh-CN/model_zoo/recognition/pp-tsm.md):
  **388.64 ms**, preprocessing 68.07 ms. Our reference notes list the V100 figure as TensorRT; it is used for the
  TensorRT FP32 lanes (``tensorrt-fp32``; Paddle-TRT is not in this set);
* **assumed, no published PP-TSMv2 figure found**: ONNX Runtime CUDA and Paddle GPU (no TensorRT) at 2x TensorRT FP32
  (cuDNN kernels without TensorRT's fusion); TensorRT FP16 (Polygraphy and ORT's TensorRT EP) at 0.6x. ``--gpu-scale``
  multiplies every GPU latency, to see how much the plan depends on them.
"""
from __future__ import annotations

import argparse

from parity.schedule import Cost, choose, turns

UCF101_TEST = 3783
TRT_FP32 = 0.00755  # s, PaddleVideo benchmark.md, V100


def gpu_costs(scale: float = 1.0) -> list[Cost]:
    rows = (("tensorrt-fp32", TRT_FP32), ("tensorrt-fp16", 0.6 * TRT_FP32), ("onnxruntime-cuda", 2 * TRT_FP32),
            ("onnxruntime-trt-fp16", 0.6 * TRT_FP32), ("paddle-gpu", 2 * TRT_FP32))
    return [Cost(name, s * scale, s * scale, device="gpu") for name, s in rows]


def plan(cores: int, decode: float, paddle_one: float, paddle_two: float, gpu_scale: float = 1.0):
    """The schedule for Paddle's CPU reference plus the five GPU backends on ``cores`` cores."""
    p = Cost("paddle", paddle_one, paddle_two, 2).parallel  # Amdahl's law through the two measured points
    paddle = Cost("paddle", paddle_one, paddle_one * ((1 - p) + p / cores), cores)
    return choose([paddle] + gpu_costs(gpu_scale), cores, decode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=16)
    # Measured here (2-core AMD EPYC, benchmarks/scale.py, 2026-11-30): decode 0.37-0.41 core-s per clip over the three
    # videos; Paddle alone 0.34-0.36 s at 1 thread, 0.196 s at 2 at the quietest moment (0.32-0.38 s while other programs
    # held a core: a two-thread op waits for its slower thread).
    parser.add_argument("--decode", type=float, default=0.38, help="decode core-seconds per clip (measured: benchmarks/scale.py)")
    parser.add_argument("--paddle-one", type=float, default=0.345, help="Paddle (oneDNN) s/clip at 1 thread (measured)")
    parser.add_argument("--paddle-two", type=float, default=0.196, help="Paddle (oneDNN) s/clip at 2 threads (measured)")
    parser.add_argument("--gpu-scale", type=float, default=1.0)
    args = parser.parse_args()
    for scale in sorted({args.gpu_scale, 2 * args.gpu_scale}):
        s = plan(args.cores, args.decode, args.paddle_one, args.paddle_two, scale)
        t_turns = turns(list(s.costs), args.decode, args.cores)
        print(f"GPU latencies x{scale:g}: {s.line()}")
        print(f"  per clip: {s.predicted * 1000:.1f} ms chosen, {t_turns * 1000:.1f} ms taking turns, limit {s.limit * 1000:.1f} ms; "
              f"UCF101 test split ({UCF101_TEST} clips): {s.predicted * UCF101_TEST / 60:.1f} min "
              f"(taking turns {t_turns * UCF101_TEST / 60:.1f} min)")
        for c in s.costs:
            print(f"    {c.name:<22} {c.device}  {c.one * 1000:7.1f} ms at 1 thread, {c.every * 1000:7.1f} ms at {c.threads}")
        # Not implemented (the engine keeps one clip in flight per lane): the reference as k one-thread replicas taking
        # alternate clips, the rest of the cores decoding. What it would give, by the same cost model:
        gpu = [c for c in s.costs if c.device != "cpu"]
        best = min((max(args.paddle_one / k, sum(c.one for c in gpu), (args.paddle_one + sum(c.one for c in gpu) + args.decode) / args.cores), k)
                   for k in range(1, args.cores))
        print(f"  not implemented: Paddle as {best[1]} one-thread replicas: {best[0] * 1000:.1f} ms per clip, "
              f"{best[0] * UCF101_TEST / 60:.1f} min for UCF101's test split")


if __name__ == "__main__":
    main()
