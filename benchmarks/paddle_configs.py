"""Paddle Inference CPU configurations on full-size PP-TSM models: speed, agreement, crashes.

    python benchmarks/paddle_configs.py

What it measures
----------------
Two full-size models are built with the project's own model code (``parity.models``, random
weights after ``paddle.seed(0)``) and exported with ``export_inference_model`` (``parity.artifacts``):

* PP-TSMv2 (LCNet backbone, temporal attention), 16 segments, 224 px, 101 classes;
* PP-TSM v1 (ResNet-50 tweaks + TSM), 8 segments, 224 px, 101 classes.

Each is run under the ``paddle.inference`` CPU modes the backends use (``CPU_MODES`` of
``parity.backends.paddle_inference``), at 1 and 2 math-library threads:

* ``native``        -- oneDNN off, IR optimization off (the program exactly as exported);
* ``onednn``        -- oneDNN kernels on, IR optimization off (on a PIR program Paddle 3.3 still runs
  its oneDNN fuse passes, and ``conv_activation_onednn_fuse_pass`` SIGSEGVs on PP-TSM v1);
* ``onednn-ir``     -- oneDNN on, IR optimization on (the deployed default);
* ``onednn-nofuse`` -- ``onednn`` without that pass (what ``paddle`` falls back to on such models).

Every configuration runs in its own subprocess (this file re-invoked with ``--worker``), so a
crash is recorded as ``crashed (signal ...)`` and the benchmark goes on. A worker loads the
fixed input (``[1, T, 3, 224, 224]`` float32, standard normal, seed 0) from an ``.npy``, does
one warm-up run, times three runs and saves the logits. Each timing configuration runs twice,
the second round in reverse order, and the table reports the lower of the two medians, which
damps noise from other processes sharing the CPU.

The table gives, per model/config/threads: median seconds per clip, the max abs difference of
the logits from ``native`` at 1 thread (the reference), max |logit| (for scale), and status.

A batch-2 check (once per model, ``onednn`` at 2 threads) feeds
``np.concatenate([x0, x1])`` and compares each row with the batch-1 logits of ``x0`` and ``x1``
from the same predictor (tolerance 1e-4): it tells whether the exported model's batch dimension
really works (the model folds ``[N, T, ...]`` into ``[N*T, ...]``). If that configuration crashes,
the check is repeated with ``native``. The difference is also shown relative to max |logit|:
with large random-init logits, float32 rounding alone can exceed the absolute tolerance.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = ("native", "onednn", "onednn-ir", "onednn-nofuse")  # parity.backends.paddle_inference.CPU_MODES
THREADS = (1, 2)
TIMED_RUNS = 3
BATCH_TOL = 1e-4
WORKER_TIMEOUT_S = 600

MODELS = {
    "PP-TSMv2": dict(arch="pptsm_v2", num_classes=101, num_seg=16, size=224, temporal_attention=True),
    "PP-TSM v1": dict(arch="pptsm_r50", num_classes=101, num_seg=8, size=224),
}


# ----------------------------------------------------------------------------- worker side


def make_predictor(model_file: str, params_file: str, config: str, threads: int):
    """The very configuration the backends use (``parity.backends.paddle_inference.make_config``)."""
    from paddle import inference

    from parity.artifacts import PaddleModel
    from parity.backends.paddle_inference import make_config

    return inference.create_predictor(make_config(PaddleModel(Path(model_file), Path(params_file)), threads, config))


def infer(predictor, x: np.ndarray) -> np.ndarray:
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(np.ascontiguousarray(x))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def worker(job: dict) -> None:
    """One configuration in this process; writes logits (.npy) and a result (.json)."""
    predictor = make_predictor(job["model_file"], job["params_file"], job["config"], job["threads"])
    x0 = np.load(job["input"])
    if job["mode"] == "time":
        infer(predictor, x0)  # warm-up
        times = []
        for _ in range(TIMED_RUNS):
            start = time.perf_counter()
            logits = infer(predictor, x0)
            times.append(time.perf_counter() - start)
        np.save(job["logits"], logits)
        result = {"median_s": statistics.median(times), "times_s": times}
    else:  # batch-2 check
        x1 = np.load(job["input2"])
        infer(predictor, x0)  # warm-up
        y0, y1 = infer(predictor, x0), infer(predictor, x1)
        y01 = infer(predictor, np.concatenate([x0, x1]))
        if y01.shape[0] != 2:
            result = {"error": f"batch-2 output has shape {list(y01.shape)}, expected [2, ...]"}
        else:
            diff = float(max(np.abs(y01[0] - y0[0]).max(), np.abs(y01[1] - y1[0]).max()))
            scale = float(max(np.abs(y0).max(), np.abs(y1).max()))
            result = {"max_abs_diff": diff, "max_abs_logit": scale, "shape": list(y01.shape)}
    Path(job["result"]).write_text(json.dumps(result))


# ----------------------------------------------------------------------------- driver side


def export_models(workdir: Path) -> dict[str, dict]:
    """Build and export both models; save their inputs. Returns per-model file paths."""
    import paddle

    try:
        from parity.artifacts import export_inference_model
    except ImportError:  # older layout: everything in parity/build.py
        from parity.build import export_inference_model
    from parity.models import ModelSpec, build_model

    out = {}
    for name, kwargs in MODELS.items():
        slug = kwargs["arch"]
        spec = ModelSpec(**kwargs)
        paddle.seed(0)
        t0 = time.perf_counter()
        exported = export_inference_model(build_model(spec), spec.num_seg, spec.size, workdir / slug / slug)
        print(f"exported {name} ({exported.model_file.name}) in {time.perf_counter() - t0:.1f} s", flush=True)
        shape = (1, spec.num_seg, 3, spec.size, spec.size)
        inputs = []
        for seed in (0, 1):  # seed 0 is the benchmark input; seed 1 is the batch-2 partner
            path = workdir / slug / f"input{seed}.npy"
            np.save(path, np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
            inputs.append(str(path))
        out[name] = {"slug": slug, "model_file": str(exported.model_file),
                     "params_file": str(exported.params_file), "inputs": inputs}
    return out


def run_worker(job: dict) -> dict:
    """Run ``job`` in a fresh interpreter; return its result or a crash/error status."""
    Path(job["result"]).unlink(missing_ok=True)
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout (> {WORKER_TIMEOUT_S} s)"}
    if proc.returncode < 0:
        sig = -proc.returncode
        try:
            sig_name = signal.Signals(sig).name
        except ValueError:
            sig_name = str(sig)
        return {"status": f"crashed (signal {sig_name})"}
    if proc.returncode != 0 or not Path(job["result"]).is_file():
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": f"error (exit {proc.returncode}): {last[:80]}"}
    result = json.loads(Path(job["result"]).read_text())
    result["status"] = f"error: {result['error']}" if "error" in result else "ok"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    with tempfile.TemporaryDirectory(prefix="paddle-configs-") as tmp:
        workdir = Path(tmp)
        models = export_models(workdir)

        # Timing: every (model, config, threads) twice; round 2 in reverse order.
        keys = [(m, c, t) for m in models for c in CONFIGS for t in THREADS]
        runs: dict[tuple, list[dict]] = {k: [] for k in keys}
        for rnd, order in enumerate((keys, keys[::-1])):
            for m, c, t in order:
                info = models[m]
                stem = workdir / info["slug"] / f"{c}-t{t}-r{rnd}"
                job = {"mode": "time", "model_file": info["model_file"], "params_file": info["params_file"],
                       "config": c, "threads": t, "input": info["inputs"][0],
                       "logits": f"{stem}.logits.npy", "result": f"{stem}.json"}
                res = run_worker(job)
                if res["status"] == "ok":
                    res["logits"] = np.load(job["logits"])
                runs[(m, c, t)].append(res)
                shown = f"{res['median_s']:.3f} s" if res["status"] == "ok" else res["status"]
                print(f"  round {rnd + 1}: {m:<10} {c:<12} {t} thr  {shown}", flush=True)

        # Batch-2 check: onednn at 2 threads, once per model. If that configuration
        # crashes, retry with native so the batch dimension still gets checked.
        batch = {}
        for m, info in models.items():
            attempts = []
            for config in ("onednn", "native"):
                stem = workdir / info["slug"] / f"batch2-{config}"
                job = {"mode": "batch2", "model_file": info["model_file"], "params_file": info["params_file"],
                       "config": config, "threads": 2, "input": info["inputs"][0],
                       "input2": info["inputs"][1], "result": f"{stem}.json"}
                res = run_worker(job)
                res["config"] = config
                attempts.append(res)
                if not res["status"].startswith(("crashed", "timeout")):
                    break
            batch[m] = attempts

    # Table.
    header = f"{'model':<11}{'config':<13}{'thr':>4}{'median s/clip':>15}{'max|Δ| vs native':>18}{'max|logit|':>12}  status"
    print()
    print(header)
    print("-" * (len(header) + 20))
    for m, c, t in keys:
        ok = [r for r in runs[(m, c, t)] if r["status"] == "ok"]
        ref = next((r for r in runs[(m, "native", 1)] if r["status"] == "ok"), None)
        if ok:
            med = f"{min(r['median_s'] for r in ok):.3f}"
            logits = ok[0]["logits"]
            diff = f"{np.abs(logits - ref['logits']).max():.2e}" if ref is not None else "n/a"
            mx = f"{np.abs(logits).max():.3f}"
        else:
            med = diff = mx = "-"
        statuses = sorted({r["status"] for r in runs[(m, c, t)]})
        status = statuses[0] if len(statuses) == 1 else " / ".join(statuses)
        print(f"{m:<11}{c:<13}{t:>4}{med:>15}{diff:>18}{mx:>12}  {status}")
    print("\n(median s/clip = min over 2 rounds of the median of 3 timed runs; reference = native, 1 thread)")

    print("\nbatch-2 check (2 threads; rows of a batch of 2 vs batch-1 logits of the same inputs):")
    for m, attempts in batch.items():
        for res in attempts:
            where = f"{m:<11}{res['config']:<13}"
            if res["status"] != "ok":
                print(f"  {where}{res['status']}")
                continue
            rel = res["max_abs_diff"] / max(res["max_abs_logit"], 1e-30)
            verdict = f"within {BATCH_TOL:g}" if res["max_abs_diff"] <= BATCH_TOL else f"EXCEEDS {BATCH_TOL:g}"
            print(f"  {where}output {res['shape']}, max|Δ| = {res['max_abs_diff']:.2e} ({verdict}), "
                  f"relative to max|logit| {res['max_abs_logit']:.4g}: {rel:.1e}")


if __name__ == "__main__":
    main()
