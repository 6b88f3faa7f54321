"""Latency of each backend on the demo's artifacts (timings live here, never in test asserts).

    python benchmarks/latency.py [--backends all] [--repeat 3]

Builds (or reuses from the cache) the demo's clips and model, runs every backend ``--repeat``
times on the same decoded tensors and prints p50/p95 per clip and clips per second.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

from parity import demo
from parity.artifacts import ArtifactCache
from parity.config import RunConfig
from parity.run import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="paddle,onnxruntime,onnxruntime-fp16")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cache = ArtifactCache()
    art = demo.build_all(cache)
    latencies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as report:
        cfg = RunConfig(
            paddle_model=str(art.paddle_model.model_file), onnx=str(art.onnx), clips=str(art.val_list),
            backends=args.backends.split(","), report=report,
        )
        for _ in range(args.repeat):
            for backend in run(cfg, cache=cache).backends:
                latencies.setdefault(backend.name, []).extend(backend.latency_ms)
    print(f"{'backend':<22}{'p50 ms':>10}{'p95 ms':>10}{'clips/s':>10}")
    for name, ms in latencies.items():
        if ms:
            print(f"{name:<22}{np.percentile(ms, 50):>10.2f}{np.percentile(ms, 95):>10.2f}{1000 / np.mean(ms):>10.1f}")
        else:
            print(f"{name:<22}{'did not run':>30}")


if __name__ == "__main__":
    main()
