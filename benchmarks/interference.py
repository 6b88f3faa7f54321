"""Do backends taking turns slow each other down, and do the wait policies help? Full-size PP-TSMv2 16x224 (LTA).

    python benchmarks/interference.py [--out /tmp/parity-scale] [--clips 12]

Paddle (oneDNN, the ``paddle`` backend's mode) and ONNX Runtime, both at every core, take turns on the same tensor,
one clip after another, as ``--schedule turns`` runs them, in one fresh process per setting:

* ``default``: ORT's threads spin after their work, OpenMP's default block time (Intel OpenMP: 200 ms);
* ``no-spin``: ORT's ``session.intra_op.allow_spinning`` = 0 (what ``parity.artifacts.ort.session`` sets);
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` and ``KMP_BLOCKTIME=0`` set before Paddle loads (``parity.schedule.PASSIVE_WAIT``);
* ``both``: the two together (what the harness does).

Each prints the median seconds per call of each backend when taking turns, beside each alone (the same process, the
other not called). Uses the model that ``benchmarks/scale.py`` builds (run it first, or give its ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import json, statistics, sys, time
import numpy as np
spin, n, model_file, onnx = sys.argv[1] == "1", int(sys.argv[2]), sys.argv[3], sys.argv[4]
from paddle import inference
import onnxruntime as ort
from parity.artifacts import ArtifactCache, PaddleModel
from parity.backends.paddle_inference import fast_cpu_mode, make_config
from parity.machine import cpu_count
threads = cpu_count()
model = PaddleModel.locate(model_file)
predictor = inference.create_predictor(make_config(model, threads, fast_cpu_mode(model, ArtifactCache(sys.argv[5]))))
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 16, 3, 224, 224)).astype(np.float32)

def paddle_call():
    h = predictor.get_input_handle(predictor.get_input_names()[0]); h.reshape(list(x.shape)); h.copy_from_cpu(x)
    predictor.run(); predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

def ort_call():
    sess.run(None, {sess.get_inputs()[0].name: x})

def timed(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t

for f in (paddle_call, ort_call):
    f()
alone = {"paddle": statistics.median(timed(paddle_call) for _ in range(n)), "onnxruntime": statistics.median(timed(ort_call) for _ in range(n))}
turns = {"paddle": [], "onnxruntime": []}
for _ in range(n):
    turns["paddle"].append(timed(paddle_call)); turns["onnxruntime"].append(timed(ort_call))
print(json.dumps({"alone": alone, "turns": {k: statistics.median(v) for k, v in turns.items()}}))
"""

SETTINGS = {"default": (True, False), "no-spin": (False, False), "passive": (True, True), "both": (False, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "parity-scale"))
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()
    out = Path(args.out)
    model, onnx = out / "model" / "ppTSMv2.json", out / "model" / "ppTSMv2.onnx"
    if not model.is_file():
        model = out / "model" / "ppTSMv2.pdmodel"
    print(f"load average {os.getloadavg()[0]:.1f}; median s/call, {args.clips} calls each")
    for name, (spin, passive) in SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
        if passive:
            env.update(OMP_WAIT_POLICY="PASSIVE", KMP_BLOCKTIME="0")
        proc = subprocess.run([sys.executable, "-c", _CHILD, "1" if spin else "0", str(args.clips), str(model), str(onnx),
                               str(out / "cache")], capture_output=True, text=True, env={**env, "GLOG_minloglevel": "2"})
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        cells = ", ".join(f"{b} {r['turns'][b]:.3f} taking turns / {r['alone'][b]:.3f} alone ({r['turns'][b] / r['alone'][b]:.2f}x)"
                          for b in ("paddle", "onnxruntime"))
        print(f"{name:<8} {cells}; sum {sum(r['turns'].values()):.3f}")


if __name__ == "__main__":
    main()
