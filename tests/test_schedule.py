"""The schedule: chosen from measured costs (faked here), and the same logits and verdicts whatever it is."""
import dataclasses
import os

import numpy as np
import pytest

from parity.schedule import PASSIVE_WAIT, Cost, choose, limit, passive_wait, predict, spread, turns

# Measured on a 2-core AMD EPYC (issue #24): full-size PP-TSMv2 16x224, seconds per clip.
EPYC = [Cost("paddle", 0.52, 0.34, 2), Cost("onnxruntime", 0.36, 0.19, 2)]
EPYC_DECODE = 0.33


def test_poor_scaling_picks_lanes_each_backend_on_its_own_core():
    s = choose(EPYC, cores=2, decode=EPYC_DECODE)
    assert s.kind == "lanes"
    assert {g.lanes: (g.cores, g.threads) for g in s.groups} == {("paddle",): ((0,), 1), ("onnxruntime",): ((1,), 1)}
    # its prediction is the limit: all single-thread work over the cores, (0.52 + 0.36 + 0.33) / 2
    assert s.predicted == pytest.approx(0.605) and s.limit == pytest.approx(0.605)
    # turn-taking: 0.34 + 0.19 with every core held, the decode on top: 0.53 + 0.33 / 2
    assert s.turns == pytest.approx(0.695)
    assert s.workers == 2 and s.to_dict()["ratio"] == pytest.approx(1.0)  # decoders niced, one per core, as with turns
    assert s.line().startswith("schedule: lanes: paddle on core 0 (1 thread), onnxruntime on core 1 (1 thread); 2 decode workers")


def test_good_scaling_keeps_turns():
    perfect = [Cost("paddle", 0.52, 0.26, 2), Cost("onnxruntime", 0.36, 0.18, 2)]
    s = choose(perfect, cores=2, decode=EPYC_DECODE)
    assert s.kind == "turns" and s.groups[0].threads == 2 and s.workers == 2
    assert s.predicted == pytest.approx(limit(perfect, EPYC_DECODE, 2))  # nothing beats perfect scaling
    # nearly perfect: lanes would win by less than the margin, so the simpler schedule stays
    assert choose([Cost("a", 1.0, 0.52, 2), Cost("b", 1.0, 0.52, 2)], 2, 0.2).kind == "turns"


def test_more_backends_than_cores_share_cores_in_turns_within_a_group():
    four = EPYC + [Cost("onnxruntime-fp16", 0.50, 0.30, 2), Cost("openvino", 0.30, 0.17, 2)]
    s = choose(four, cores=2, decode=EPYC_DECODE)
    assert s.kind == "lanes" and len(s.groups) == 2 and sorted(n for g in s.groups for n in g.lanes) == sorted(c.name for c in four)
    busy = [sum(next(c for c in four if c.name == n).one for n in g.lanes) for g in s.groups]
    assert max(busy) <= s.predicted + 1e-9 and s.predicted < s.turns


def test_amdahl_between_the_measured_points():
    c = Cost("x", 1.6, 0.25, 16)
    assert c.at(1) == 1.6 and c.at(16) == pytest.approx(0.25) and c.at(32) == 0.25
    assert 0.25 < c.at(8) < c.at(4) < c.at(2) < 1.6
    flat = Cost("native", 1.69, 1.71, 2)  # Paddle native ignores its thread count
    assert flat.parallel == 0.0 and flat.at(2) == 1.71


# A 16-core GPU box on paper (benchmarks/gpu_plan.py): decode 0.33 core-s/clip (measured here), Paddle's CPU reference
# at 1 thread as here and at 16 threads at 82% parallel efficiency, GPU latencies as published (V100, PaddleVideo).
GPU_BOX = [Cost("paddle", 0.52, 0.52 / (16 * 0.82), 16)] + [
    Cost(name, s, s, device="gpu") for name, s in (("tensorrt-fp32", 0.0120), ("tensorrt-fp16", 0.0076), ("onnxruntime-cuda", 0.0200),
                                                   ("onnxruntime-trt-fp16", 0.0080), ("paddle-gpu", 0.0250))]


def test_gpu_box_plan_gives_paddle_part_of_the_cores_and_decodes_on_the_rest():
    s = choose(GPU_BOX, cores=16, decode=0.33)
    assert s.kind == "lanes" and s.unpinned == ("tensorrt-fp32", "tensorrt-fp16", "onnxruntime-cuda", "onnxruntime-trt-fp16", "paddle-gpu")
    (paddle,) = s.groups
    assert paddle.lanes == ("paddle",) and 1 < paddle.threads < 16 and paddle.cores == tuple(range(paddle.threads))
    assert s.workers == 16  # decoding takes the cores left over, and what the lanes leave idle
    assert s.predicted < s.turns and s.predicted == pytest.approx(predict([([GPU_BOX[0]], paddle.threads)], GPU_BOX[1:], 0.33, 16))
    gpu_time = sum(c.one for c in GPU_BOX[1:])
    assert s.limit == pytest.approx(max((0.52 + gpu_time + 0.33) / 16, gpu_time))  # one GPU runs its lanes one by one
    assert s.predicted == pytest.approx(s.limit)


def test_turns_prediction_is_the_one_group_case():
    assert turns(EPYC, EPYC_DECODE, 2) == pytest.approx(predict([(EPYC, 2)], [], EPYC_DECODE, 2))


def test_spread_without_measurements():
    s = spread(["paddle", "onnxruntime", "openvino"], 2)
    assert [g.lanes for g in s.groups] == [("paddle", "openvino"), ("onnxruntime",)] and [g.cores for g in s.groups] == [(0,), (1,)]
    assert s.workers == 2


def test_passive_wait_keeps_what_the_user_set():
    env = {"KMP_BLOCKTIME": "200"}
    assert passive_wait(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env == {"KMP_BLOCKTIME": "200", "OMP_WAIT_POLICY": "PASSIVE"}
    assert set(PASSIVE_WAIT) == {"OMP_WAIT_POLICY", "KMP_BLOCKTIME"}


def test_isolated_child_gets_its_cores_and_passive_wait(demo_artifacts):
    """A lane's process runs on the cores it was given, with the wait policy set before Paddle loads."""
    from parity.backends.isolated import IsolatedRunner

    runner = IsolatedRunner("tests.test_schedule:_affinity_runner", demo_artifacts, cpus=(0,))
    with runner:
        out = runner.infer({"x": np.zeros(1, np.float32)}, check_inputs=False)
    assert out["cpus"].tolist() == [0] and out["passive"].tolist() == [1]


def test_decode_workers_yield_every_core_to_the_backends(tmp_path):
    """A decode worker runs at the lowest priority (nice 19): it takes the cycles the
    backends leave idle. At nice 10 it took enough of them to slow Paddle to 1.31x its latency alone inside the run,
    ONNX Runtime to 1.19x (benchmarks/scale.py on the 2-core EPYC); at 19, 1.07x and 0.91x, at the same throughput."""
    from parity.clips import Clip
    from parity.preprocess import PreprocessConfig
    from parity.stream import _LIVE, decode_stream

    clips = enumerate(Clip(tmp_path / f"missing_{i}.mp4", 0) for i in range(2))
    stream = decode_stream(clips, PreprocessConfig.for_size(8, 64), 1)
    first = next(stream)
    assert not first.ok  # a missing file is its clip's error; the worker lives on
    (worker,) = list(_LIVE)
    assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 19)
    stream.close()


class _AffinityRunner:
    def activate(self):
        pass

    def deactivate(self):
        pass

    def infer(self, feed, check_inputs=False):
        self.inference_time = 0.0
        passive = os.environ.get("OMP_WAIT_POLICY") is not None and os.environ.get("KMP_BLOCKTIME") is not None
        return {"cpus": np.array(sorted(os.sched_getaffinity(0))), "passive": np.array([int(passive)])}


def _affinity_runner(art):
    return _AffinityRunner()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="lanes need two cores")
def test_same_logits_and_verdicts_whatever_the_schedule(demo_run_config, parity_cache, tmp_path):
    """Thread counts change the reduction order, so the logits may differ in the last bits: within the fp32 floor."""
    from parity.run import run

    base = dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime"])
    taking_turns = run(dataclasses.replace(base, schedule="turns", report=str(tmp_path / "turns")), cache=parity_cache)
    in_lanes = run(dataclasses.replace(base, schedule="lanes", report=str(tmp_path / "lanes")), cache=parity_cache)
    assert taking_turns.run["schedule"]["kind"] == "turns" and in_lanes.run["schedule"]["kind"] == "lanes"
    pids = {b.name: b.pid for b in in_lanes.backends}
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # each lane its own process
    atol = demo_run_config.tolerances["fp32"].atol
    for name in ("paddle", "onnxruntime"):
        np.testing.assert_allclose(in_lanes.logits[name], taking_turns.logits[name], rtol=0, atol=atol)
    assert in_lanes.verdict == taking_turns.verdict
    assert [(c.backend, c.passed) for c in in_lanes.comparisons] == [(c.backend, c.passed) for c in taking_turns.comparisons]


def test_ort_sessions_do_not_spin(demo_artifacts):
    """ORT's threads would spin after each op on cores the next backend or a decoder needs; a caller's entry wins."""
    from parity.artifacts.ort import session

    sess = session(demo_artifacts.onnx, threads=2)
    assert sess.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    again = session(demo_artifacts.onnx, threads=2, config={"session.intra_op.allow_spinning": "1"})
    assert again.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"


class _FakeRunner:
    def __init__(self, name):
        self.name, self.active = name, False

    def activate(self):
        self.active = True

    def deactivate(self):
        self.active = False


@pytest.mark.parametrize("lanes_s, turns_s, kept, ahead", [(0.5, 0.8, "lanes", 0.5), (0.9, 0.6, "turns", 0.9),
                                                           (0.8, 0.6, "turns", 0.1)])
def test_lanes_are_tried_against_turns_on_the_first_clips_and_the_faster_kept(monkeypatch, lanes_s, turns_s, kept, ahead):
    """Costs measured alone miss what only the run shows: the run's own clips decide, timed per schedule. The clips
    decoded while the runners started (``ahead``: they take only the backends' time) are not the lanes' to count."""
    from types import SimpleNamespace

    from parity.engines import trial as trial_module
    from parity.results import BackendRecord

    lanes_schedule = choose(EPYC, cores=2, decode=EPYC_DECODE)
    made = []

    class Engine:
        schedule = lanes_schedule

        def _runner(self, lane, art):
            made.append(_FakeRunner(f"{lane.name}-turns"))
            return made[-1]

    lanes = [SimpleNamespace(name="paddle"), SimpleNamespace(name="onnxruntime")]
    lane_runners = {"paddle": _FakeRunner("paddle-lane"), "onnxruntime": _FakeRunner("onnxruntime-lane")}
    runners = dict(lane_runners)
    for r in runners.values():
        r.activate()
    records = {n: BackendRecord(n, "fp32", "", "ok") for n in runners}
    engine, record, clock = Engine(), {"kind": "lanes"}, [0.0]
    monkeypatch.setattr(trial_module.time, "perf_counter", lambda: clock[0])
    t = trial_module.Trial(engine, lanes, None, runners, records, record)
    n, queued = trial_module.TRIAL_CLIPS, 2 * lanes_schedule.workers
    assert trial_module.head_start(lanes_schedule.workers) == 1 + queued
    for i in range(n + 2 + queued):  # the first tick starts the clock, then the warm-up and queued clips, then n timed
        clock[0] += ahead if 1 <= i <= 1 + queued else lanes_s
        t.tick()
    assert engine.schedule.kind == "turns" and {r.name for r in runners.values()} == {"paddle-turns", "onnxruntime-turns"}
    for _ in range(n + 1):
        clock[0] += turns_s
        t.tick()
    assert t.done and record["trial"]["kept"] == kept and record["kind"] == kept and engine.schedule.kind == kept
    assert kept == "lanes" or record["groups"] == [{"lanes": ("paddle", "onnxruntime"), "cores": (0, 1), "threads": 2}]
    assert {r.name.rsplit("-", 1)[1] for r in runners.values()} == {"lane" if kept == "lanes" else "turns"}
    assert all(r.active for r in runners.values()) and not any(r.active for r in (made if kept == "lanes" else lane_runners.values()))
