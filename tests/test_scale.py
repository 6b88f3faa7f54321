"""Release-set scale: streaming in bounded memory, each clip decoded once, batches, the tensor cache,
shards merged into one run, the Ray engine, and a report that stays small for thousands of clips."""
import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from parity.backends import BACKENDS, Lane
from parity.cli import main
from parity.engines.local import LaneFlow
from parity.inputs import ClipInput
from parity.results import BackendRecord
from parity.run import parse_shard, run


def _many_clips(demo_artifacts, folder: Path, n: int) -> Path:
    """A labelled list of ``n`` clips: the validation clips again and again, each under its own name."""
    src = demo_artifacts.val_list
    entries = [ln.split() for ln in src.read_text().splitlines() if ln.strip()]
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name, label = entries[i % len(entries)]
        dst = folder / f"{i:05d}_{Path(name).name}"
        if not dst.exists():
            os.link(src.parent / name, dst)
        lines.append(f"{dst.name} {label}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


# ----------------------------------------------------------------------------- units


def _flow(*specs):
    """Running lanes ``(name, batch, against)`` over one backend; returns the flow, its records and what it delivered."""
    lanes = [Lane(name, BACKENDS["onnxruntime"], batch, against) for name, batch, against in specs]
    records = {lane.name: BackendRecord(lane.name, "fp32", "", "ok") for lane in lanes}
    delivered = []
    flow = LaneFlow(lanes, records, lambda item, rows: delivered.append((item.index, sorted(rows))))
    for lane in lanes:
        flow.start(lane.name)
    return flow, records, delivered


def test_lanes_deliver_each_clip_once_in_order_whatever_their_batches():
    flow, records, delivered = _flow(("a", 1, None), ("b", 3, "a"))
    for i in range(7):
        for name, batch in flow.add(ClipInput(None, i, tensor=np.zeros(1))):
            flow.done(name, batch, np.full((len(batch), 2), i, np.float32), 0.01)
        flow.deliver()
        assert len(flow.waiting) <= 3  # memory: at most the largest batch waits
    for name, batch in flow.remainders():
        flow.done(name, batch, np.zeros((len(batch), 2), np.float32), 0.01)
    flow.deliver()
    assert delivered == [(i, ["a", "b"]) for i in range(7)]
    assert len(records["b"].latency_ms) == 7


def test_a_lane_that_fails_stops_holding_clips_back():
    flow, records, delivered = _flow(("a", 1, None), ("b", 2, "a"))
    for name, batch in flow.add(ClipInput(None, 0, tensor=np.zeros(1))):
        flow.done(name, batch, np.zeros((1, 2), np.float32), 0.0)
    flow.fail("b", RuntimeError("out of memory"))
    flow.deliver()
    assert delivered == [(0, ["a"])] and records["b"].status == "error" and "out of memory" in records["b"].reason


def test_shard_spec():
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(Exception, match="--shard"):
            parse_shard(bad)


# ----------------------------------------------------------------------------- real runs



@pytest.mark.slow
def test_each_clip_is_decoded_once_with_a_backend_in_its_own_process(demo_run_config, parity_cache, tmp_path, decode_log):
    cfg = dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime", "paddle-onednn"], workers=2, report=str(tmp_path / "a"))
    result = run(cfg, cache=parity_cache)
    n = len(result.clips)
    # every real decode, counted where it happened (the workers' sitecustomize hook), not from the run's own record
    decodes = decode_log()
    per_clip = Counter(path for _, path in decodes)
    assert sorted(per_clip) == sorted(str(Path(c.path).resolve()) for c in result.clips) and set(per_clip.values()) == {1}, per_clip
    decoders = {pid for pid, _ in decodes}
    assert len(decoders) >= 2 and os.getpid() not in decoders, decoders  # in parallel, in worker processes
    assert result.run["decode"]["decoded"] == n and result.run["decode"]["clips"] == n and result.run["budget"]["workers"] == 2
    backends = {b.name: b for b in result.backends}
    assert {name: b.status for name, b in backends.items()} == {"paddle": "ok", "onnxruntime": "ok", "paddle-onednn": "ok"}
    assert backends["paddle-onednn"].pid not in (None, os.getpid(), *decoders)  # a process of its own
    assert backends["paddle"].pid == backends["onnxruntime"].pid == os.getpid()
    # In-process decoding: the same count, in this process.
    again = run(dataclasses.replace(cfg, workers=0, report=str(tmp_path / "b")), cache=parity_cache)
    in_process = decode_log()[len(decodes):]
    assert len(in_process) == n == len({path for _, path in in_process}) and {pid for pid, _ in in_process} == {os.getpid()}
    # Bitwise: each backend gets the same tensors (decoding is deterministic, wherever it runs) and runs with the same
    # threads in the same kind of process both times; only where the tensor was decoded changed.
    assert all((again.logits[k] == result.logits[k]).all() for k in ("paddle", "onnxruntime", "paddle-onednn"))


# The peak of the whole process tree (this process, its decode workers, isolated backends): VmRSS summed over
# the tree, sampled every 20 ms. ru_maxrss sees one process only, and decode workers that kept every tensor
# would grow where it does not look.
_RSS_SCRIPT = """
import json, os, sys, threading, time
from parity.config import RunConfig
from parity.artifacts import ArtifactCache
from parity.run import run

def tree_rss_kib(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total

peak, done = [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], tree_rss_kib(os.getpid()))
        time.sleep(0.02)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
cfg = RunConfig(**json.loads(sys.argv[1]))
result = run(cfg, cache=ArtifactCache(sys.argv[2]))
done.set()
sampler.join()
assert result.verdict == "pass", result.verdict
print(peak[0] // 1024, len(result.clips))
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_clips(demo_artifacts, parity_cache, tmp_path):
    """The process tree's peak RSS at 4N clips within 50 MiB of its peak at N (each tensor is 1.2 MB here: holding
    them, in the parent or in the decode workers, would add 115 MB)."""
    peaks = {}
    # a first run (not measured) fills what a cold cache makes once: the `paddle` reference's crash probe runs in a
    # child process of the first run, which would inflate the first measured peak and hide a real growth
    for n in (8, 32, 128):
        clips = _many_clips(demo_artifacts, tmp_path / f"clips{n}", n)
        cfg = {"paddle_model": str(demo_artifacts.paddle_model.model_file), "onnx": str(demo_artifacts.onnx), "clips": str(clips),
               "report": str(tmp_path / f"r{n}"), "workers": 2,
               # one schedule for every size: from 50 clips `auto` measures each backend in processes of its own (and
               # may pick lanes, a process per backend), which is the schedule's memory, not the clips'
               "schedule": "turns"}
        # the lower of two runs: a passing spike of this machine (another process of the tree for a moment) is not in
        # both, while what grows with the clips is in every run
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, json.dumps(cfg), str(parity_cache.root)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-2000:]
            mib, count = map(int, proc.stdout.split()[-2:])
            assert count == n
            peaks[n] = min(peaks.get(n, mib), mib)
    assert peaks[128] - peaks[32] < 50, peaks  # peaks[8] is the warm-up


@pytest.mark.slow
def test_batch_check_compares_each_backend_with_itself_at_batch_one(demo_run_config, parity_cache, tmp_path):
    cfg = dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime"], batch_check=4, report=str(tmp_path))
    result = run(cfg, cache=parity_cache)
    pairs = {(c.backend, c.reference): c for c in result.comparisons}
    assert set(pairs) == {("onnxruntime", "paddle"), ("paddle@b4", "paddle"), ("onnxruntime@b4", "onnxruntime")}
    assert all(c.passed and c.clips_compared == len(result.clips) for c in pairs.values())
    assert {b.name: b.batch for b in result.backends} == {"paddle": 1, "onnxruntime": 1, "paddle@b4": 4, "onnxruntime@b4": 4}
    assert result.verdict == "pass" and result.run["batch_check"] == 4
    # what each runner was really given (the configured batch above is only what was asked for)
    n, clip = len(result.clips), [8, 3, 112, 112]  # the demo's input: 8 segments of 3 x 112 x 112
    fours = [[4, *clip]] + ([[n % 4, *clip]] if n % 4 else [])
    assert {b.name: b.batch_shapes for b in result.backends} == {"paddle": [[1, *clip]], "onnxruntime": [[1, *clip]], "paddle@b4": fours,
                                                                 "onnxruntime@b4": fours}


@pytest.mark.slow
def test_batch_size_needs_a_dynamic_batch(demo_artifacts, tmp_path, capsys):
    import onnx

    model = onnx.load(str(demo_artifacts.onnx))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    code = main(["run", "--onnx", str(fixed), "--clips", str(demo_artifacts.val_list), "--backends", "onnxruntime",
                 "--reference", "onnxruntime", "--batch-size", "4", "--report", str(tmp_path / "r")])
    assert code == 2
    assert "fixed.onnx: the model's batch dimension is fixed at 1, so it cannot run batches of 4" in capsys.readouterr().err


@pytest.mark.slow
def test_batched_run_matches_batch_one(demo_run_config, parity_cache, clean_run, tmp_path):
    result = run(dataclasses.replace(demo_run_config, batch_size=5, report=str(tmp_path)), cache=parity_cache)
    assert result.run["batch_size"] == 5 and all(b.batch == 5 for b in result.backends)
    n, clip = len(result.clips), [8, 3, 112, 112]
    assert n % 5 and all(b.batch_shapes == [[5, *clip], [n % 5, *clip]] for b in result.backends)  # batches of 5, then the rest
    for name in ("paddle", "onnxruntime"):
        np.testing.assert_allclose(result.logits[name], clean_run.logits[name], atol=1e-5)


@pytest.mark.slow
def test_tensor_cache_makes_a_rerun_decode_nothing(demo_run_config, parity_cache, tmp_path, defective_onnx):
    cache_dir = tmp_path / "tensors"
    first = run(dataclasses.replace(demo_run_config, tensor_cache=str(cache_dir), report=str(tmp_path / "a")), cache=parity_cache)
    n = len(first.clips)
    assert first.run["decode"]["decoded"] == n and first.run["tensor_cache"]["entries"] == n
    assert first.run["tensor_cache"]["bytes"] > 0
    # a new ONNX model: nothing is decoded again, and the numbers are the same tensors' numbers
    second = run(dataclasses.replace(demo_run_config, onnx=str(defective_onnx("conv_weight_x1.05")), tensor_cache=str(cache_dir),
                                     report=str(tmp_path / "b")), cache=parity_cache)
    assert second.run["decode"]["decoded"] == 0 and second.run["decode"]["cache_hits"] == n
    # Bitwise: .npy round-trips float32 exactly, so paddle gets the very tensors the first run decoded, with the same
    # threads in the same process kind; equal inputs, equal outputs.
    assert (second.logits["paddle"] == first.logits["paddle"]).all() and second.verdict == "fail"
    # other preprocessing is another key
    third = run(dataclasses.replace(demo_run_config, preprocess="cpp", tensor_cache=str(cache_dir), report=str(tmp_path / "c")),
                cache=parity_cache)
    assert third.run["decode"]["decoded"] == n and third.run["tensor_cache"]["entries"] == 2 * n


def _comparable(folder: Path) -> dict:
    data = json.loads((folder / "results.json").read_text())
    for c in data["comparisons"]:
        c.pop("tolerance", None)
    return {k: data[k] for k in ("verdict", "reference", "comparisons", "clips", "notes", "problems", "artifacts", "preprocess")}


@pytest.mark.slow
@pytest.mark.parametrize("defect", [None, "conv_weight_x1.05"])
def test_two_shards_merged_equal_one_unsharded_run(demo_artifacts, defective_onnx, tmp_path, defect):
    onnx = defective_onnx(defect) if defect else demo_artifacts.onnx
    base = ["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(onnx), "--clips", str(demo_artifacts.val_list)]
    whole = main([*base, "--report", str(tmp_path / "whole")])
    shards = [main([*base, "--shard", f"{i}/2", "--report", str(tmp_path / f"s{i}")]) for i in (1, 2)]
    merged = main(["merge", str(tmp_path / "s2"), str(tmp_path / "s1"), "--report", str(tmp_path / "merged")])
    assert whole == merged == (1 if defect else 0)
    assert set(shards) <= {0, 1}
    one, two = (json.loads((tmp_path / f"s{i}" / "results.json").read_text())["clips"] for i in (1, 2))
    assert one and two and not {c["path"] for c in one} & {c["path"] for c in two}
    # Bitwise: a clip's logits do not depend on which shard ran it (batch 1, same runners, same threads, one machine),
    # and merge recomputes the comparisons from those logits; equal logits make equal statistics.
    assert _comparable(tmp_path / "whole") == _comparable(tmp_path / "merged")
    whole_logits, merged_logits = np.load(tmp_path / "whole" / "logits.npz"), np.load(tmp_path / "merged" / "logits.npz")
    assert sorted(whole_logits.files) == sorted(merged_logits.files)
    assert all((whole_logits[k] == merged_logits[k]).all() for k in whole_logits.files)


def test_merge_refuses_what_is_not_one_run(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "nothing"), "--report", str(tmp_path / "m")]) == 2
    assert "not a report folder" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_on_a_local_instance_equals_the_local_engine(demo_run_config, parity_cache, clean_run, tmp_path):
    ray = pytest.importorskip("ray", reason="the [ray] extra is part of [test]; this only skips outside it")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    try:
        result = run(dataclasses.replace(demo_run_config, engine="ray", report=str(tmp_path)), cache=parity_cache)
    finally:
        ray.shutdown()
    assert result.run["engine"] == "ray" and result.run["decode"]["clips"] == len(clean_run.clips)
    assert result.verdict == clean_run.verdict == "pass"
    # Bitwise (logits, and so every statistic of the comparisons): each actor builds the same runner with the same
    # thread count as the local engine and feeds it the same tensors at batch 1; Ray moves the arrays, it does not
    # compute on them. With other thread counts on the two sides this would have to be within the FP32 noise floor.
    assert [dataclasses.asdict(c) for c in result.comparisons] == [dataclasses.asdict(c) for c in clean_run.comparisons]
    for name in ("paddle", "onnxruntime", "onnxruntime-fp16"):
        assert (result.logits[name] == clean_run.logits[name]).all()


@pytest.mark.slow
def test_ray_calibration_that_fails_on_the_driver_is_the_int8_lanes_error(demo_run_config, parity_cache, tmp_path):
    """onnxruntime-int8 on Ray is calibrated on the driver: a calibration list with no readable clip is that lane's
    error, as with the local engine; the other backends are judged."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is part of [test]; this only skips outside it")
    listing = tmp_path / "calibration.txt"
    listing.write_text("missing.avi 0\n")
    cfg = dataclasses.replace(demo_run_config, engine="ray", report=str(tmp_path / "r"), backends=["paddle", "onnxruntime", "onnxruntime-int8"],
                              calibration=str(listing))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    try:
        result = run(cfg, cache=parity_cache)
    finally:
        ray.shutdown()
    status = {b.name: (b.status, b.reason) for b in result.backends}
    assert status["onnxruntime-int8"][0] == "error" and "no readable calibration clip" in status["onnxruntime-int8"][1], status
    assert status["onnxruntime"][0] == "ok" and next(c for c in result.comparisons if c.backend == "onnxruntime").passed


@pytest.mark.slow
def test_default_reference_runs_pptsm_v1_and_agrees_with_the_native_program(small_pptsm_r50, tmp_path, parity_cache):
    """oneDNN's conv+leaky_relu fusion crashes PP-TSM v1 under Paddle 3.3: the fast reference must not."""
    from parity.backends.paddle_inference import fast_cpu_mode
    from parity.config import RunConfig

    pm, listing = small_pptsm_r50
    assert fast_cpu_mode(pm, parity_cache) in ("onednn", "onednn-nofuse")
    cfg = RunConfig(paddle_model=str(pm.model_file), clips=str(listing), backends=["paddle-native", "paddle"], reference="paddle-native",
                    report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    assert result.verdict == "pass", result.notes
    (comparison,) = result.comparisons
    assert comparison.backend == "paddle" and comparison.passed and comparison.top1_agreement == 1.0


@pytest.mark.slow
def test_default_reference_agrees_with_the_native_program_on_pptsm_v2(demo_run_config, parity_cache, tmp_path):
    from parity.artifacts import PaddleModel
    from parity.backends.paddle_inference import fast_cpu_mode

    assert fast_cpu_mode(PaddleModel.locate(demo_run_config.paddle_model), parity_cache) == "onednn"
    cfg = dataclasses.replace(demo_run_config, backends=["paddle-native", "paddle"], reference="paddle-native", report=str(tmp_path))
    result = run(cfg, cache=parity_cache)
    (comparison,) = result.comparisons
    assert comparison.passed and comparison.max_abs < 1e-4
