"""The fault matrix: every bad input, model, backend and report path a user can hand the gate.

Each case asserts the exit code, the one-line message, that the other clips ran, and that the
report is complete; no case may print a traceback or "internal error".
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures.faults import make_fault_clips, write_list

pytestmark = pytest.mark.slow


def _cli(*args, env=None, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "parity", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stderr + proc.stdout and "internal error" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _strict(path: Path) -> dict:
    """results.json read as strict JSON (NaN or Infinity would raise)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _complete(report: Path) -> dict:
    data = _strict(report / "results.json")
    assert data["complete"] is True and data["finished"] in (report / "index.html").read_text()
    assert (report / "logits.npz").is_file() and (report / "clips.csv").is_file()
    return data


def _error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("parity: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _model_args(demo_artifacts):
    return ["--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", demo_artifacts.onnx]


# ----------------------------------------------------------------------------- clips


@pytest.fixture(scope="module")
def fault_run(demo_artifacts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    good = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    cases = make_fault_clips(folder / "clips", good)
    listing = write_list(folder / "list.txt", cases)
    report = folder / "report"
    proc = _cli("run", *_model_args(demo_artifacts), "--clips", listing, "--backends", "paddle,onnxruntime", "--report", report)
    return cases, proc, report


def test_the_run_over_every_bad_clip_passes_on_the_good_ones(fault_run):
    cases, proc, report = fault_run
    assert proc.returncode == 0, proc.stderr
    data = _complete(report)
    assert len(data["clips"]) == len(cases)
    ok = [c for c in data["clips"] if c["status"] == "ok"]
    assert {c["path"] for c in ok} == {c.path for c in cases.values() if c.error is None}
    (comparison,) = data["comparisons"]
    assert comparison["passed"] and comparison["clips_compared"] == len(ok)


@pytest.mark.parametrize("case", [
    "good", "truncated", "zero_byte", "text_as_video", "one_frame", "three_frames", "grayscale", "uhd_4k", "odd_size",
    "variable_frame_rate", "directory", "unreadable", "name_too_long", "missing", "non_integer_label", "label_out_of_range",
])
def test_each_clip_case(fault_run, case):
    cases, proc, report = fault_run
    expected = cases[case]
    record = next(c for c in json.loads((report / "results.json").read_text())["clips"] if c["path"] == expected.path)
    if expected.error is None:
        assert record["status"] == "ok" and record["error"] is None
    else:
        assert record["status"] == "error" and expected.error in record["error"] and "\n" not in record["error"]
        assert f"skipped clip: {record['error']}" in proc.stdout  # said in the terminal, one line
        assert Path(expected.path).name[:40] in (report / "index.html").read_text()


def test_a_video_file_as_clips_runs_that_clip(demo_artifacts, tmp_path):
    clip = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    proc = _cli("run", *_model_args(demo_artifacts), "--clips", clip, "--backends", "paddle,onnxruntime", "--report", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["path"] for c in _complete(tmp_path)["clips"]] == [str(clip)]


# ----------------------------------------------------------------------------- models


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def test_truncated_onnx_exits_2_naming_it(demo_artifacts, tmp_path):
    bad = _truncate(demo_artifacts.onnx, tmp_path / "cut.onnx")
    proc = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", bad, "--clips", demo_artifacts.val_list,
                "--report", tmp_path / "r")
    assert proc.returncode == 2 and f"{bad}: not a readable ONNX model" in _error_line(proc)


def test_a_model_of_another_segment_count_exits_2(demo_artifacts, tmp_path):
    import onnx

    model = onnx.load(str(demo_artifacts.onnx))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 16
    other = tmp_path / "t16.onnx"
    onnx.save(model, str(other))
    proc = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", other, "--clips", demo_artifacts.val_list,
                "--report", tmp_path / "r")
    assert proc.returncode == 2 and f"{other}: input (name, T, size)" in _error_line(proc)


def test_missing_and_truncated_params(demo_artifacts, tmp_path):
    pm = demo_artifacts.paddle_model
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(pm.model_file, folder / pm.model_file.name)
    proc = _cli("run", "--paddle-model", folder / pm.model_file.name, "--clips", demo_artifacts.val_list, "--report", tmp_path / "r")
    assert proc.returncode == 2 and "its parameters file" in _error_line(proc) and "is missing" in _error_line(proc)
    _truncate(pm.params_file, folder / pm.params_file.name)
    proc = _cli("run", "--paddle-model", folder / pm.model_file.name, "--onnx", demo_artifacts.onnx, "--clips", demo_artifacts.val_list,
                "--report", tmp_path / "r")
    assert proc.returncode == 2 and "reference paddle did not run" in _error_line(proc)
    assert _complete(tmp_path / "r")["verdict"] == "fail"


# ----------------------------------------------------------------------------- backends


def _backend_fault(demo_run_config, parity_cache, monkeypatch, tmp_path, factory, timeout=None):
    import dataclasses

    from parity.backends import BACKENDS
    from parity.backends.isolated import IsolatedRunner
    from parity.report import write_report
    from parity.run import run

    faulty = dataclasses.replace(
        BACKENDS["onnxruntime-fp16"], make_runner=lambda art: IsolatedRunner(factory, art, name="x", timeout=timeout)
    )
    monkeypatch.setitem(BACKENDS, "onnxruntime-fp16", faulty)
    result = run(dataclasses.replace(demo_run_config, report=str(tmp_path)), cache=parity_cache)
    write_report(result, tmp_path)
    status = {b.name: (b.status, b.reason) for b in result.backends}
    assert status["paddle"][0] == status["onnxruntime"][0] == "ok" and result.verdict == "fail"
    assert [c.backend for c in result.comparisons] == ["onnxruntime"] and result.comparisons[0].clips_compared == len(result.clips)
    _complete(tmp_path)
    return status["onnxruntime-fp16"]


def test_a_backend_out_of_memory_is_its_error(demo_run_config, parity_cache, monkeypatch, tmp_path):
    status, reason = _backend_fault(demo_run_config, parity_cache, monkeypatch, tmp_path, "fixtures.defects:memory_limited_runner")
    # the worker's answer, not a crash report: 'died (exit code 1): EOFError: Ran out of input' names nothing
    assert status == "error" and "out of memory: the backend process could not hold the clip" in reason, reason


def test_a_hanging_backend_is_killed_and_reported(demo_run_config, parity_cache, monkeypatch, tmp_path):
    start = time.monotonic()
    status, reason = _backend_fault(demo_run_config, parity_cache, monkeypatch, tmp_path, "fixtures.defects:hanging_runner", timeout=5)
    assert status == "error" and "gave no answer within 5 s (--backend-timeout) and was killed" in reason
    assert time.monotonic() - start < 300


def test_backend_timeout_flag_isolates_every_backend(demo_run_config, parity_cache, tmp_path):
    import dataclasses

    from parity.run import run

    result = run(dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime"], backend_timeout=120, report=str(tmp_path)),
                 cache=parity_cache)
    assert result.verdict == "pass" and os.getpid() not in [b.pid for b in result.backends]


# ----------------------------------------------------------------------------- verdict integrity


def _nan_onnx(src: Path, dst: Path, negate: bool = False) -> Path:
    """The model with its logits multiplied by NaN (or by -1)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    out = model.graph.output[0].name
    raw = out + "_raw"
    for node in model.graph.node:
        node.output[:] = [raw if o == out else o for o in node.output]
    factor = np.array(-1.0 if negate else np.nan, dtype=np.float32)
    model.graph.initializer.append(numpy_helper.from_array(factor, "parity_factor"))
    model.graph.node.append(helper.make_node("Mul", [raw, "parity_factor"], [out], name="parity_fault"))
    onnx.save(model, str(dst))
    return dst


def test_nan_outputs_are_that_backends_named_failure(demo_artifacts, tmp_path):
    bad = _nan_onnx(demo_artifacts.onnx, tmp_path / "nan.onnx")
    proc = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", bad, "--clips", demo_artifacts.val_list,
                "--backends", "paddle,onnxruntime", "--report", tmp_path / "r")
    assert proc.returncode == 1
    data = _complete(tmp_path / "r")  # strict JSON: no bare NaN
    (comparison,) = data["comparisons"]
    n = len(data["clips"])
    assert f"outputs contain NaN in {n} clips" in comparison["reasons"] and not comparison["passed"]
    assert comparison["accuracy"] is None and comparison["top1_agreement"] == 0.0  # never class 0, never "accurate"
    assert all(c["top1_backend"] is None for c in comparison["clips"])
    assert "comparisons[0].max_abs" in data["nonfinite_values"]
    assert f"outputs contain NaN in {n} clips" in proc.stdout


@pytest.mark.parametrize("tol", ["fp32.atol=nan", "fp32.rtol=inf", "fp32.atol=-1", "fp16.min_top1_agreement=1.5", "onnxruntime.atol=nan"])
def test_tolerances_that_would_pass_anything_are_refused(demo_artifacts, tmp_path, tol):
    negated = _nan_onnx(demo_artifacts.onnx, tmp_path / "neg.onnx", negate=True)
    proc = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", negated, "--clips", demo_artifacts.val_list,
                "--backends", "paddle,onnxruntime", "--tol", tol, "--report", tmp_path / "r")
    assert proc.returncode == 2 and f"--tol '{tol}'" in _error_line(proc)
    assert not (tmp_path / "r").exists()


def test_nan_tolerance_in_a_config_file_is_refused(demo_artifacts, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.parity]\nbackends = ['paddle']\n[tool.parity.tolerance.fp32]\natol = nan\n")
    proc = _cli("run", "--config", tmp_path / "pyproject.toml", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list)
    assert proc.returncode == 2 and "[tolerance.fp32]: atol must be a finite number, not nan" in _error_line(proc)


@pytest.mark.parametrize("tol,problem", [("onnxrutime.atol=1", "unknown scope 'onnxrutime'"), ("fp33.atol=1", "unknown scope 'fp33'"),
                                         ("fp32.atoll=1", "unknown field 'atoll'")])
def test_tolerance_typos_are_errors_listing_the_known(demo_artifacts, tmp_path, tol, problem):
    proc = _cli("run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--tol", tol, "--report", tmp_path)
    line = _error_line(proc)
    assert proc.returncode == 2 and problem in line and ("known: fp32, fp16, int8, paddle" in line or "fields:" in line)


def test_a_reference_outside_backends_is_said(demo_artifacts, tmp_path):
    proc = _cli("run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--backends", "onnxruntime", "--report", tmp_path)
    assert proc.returncode == 0
    said = "reference paddle is not in --backends; it was added, to run as the reference"
    assert f"note: {said}" in proc.stdout and said in (tmp_path / "index.html").read_text()


def test_a_low_precision_reference_is_refused_unless_allowed(demo_artifacts, tmp_path):
    args = ["run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--backends", "onnxruntime-fp16,onnxruntime",
            "--reference", "onnxruntime-fp16"]
    proc = _cli(*args, "--report", tmp_path / "a")
    assert proc.returncode == 2 and "reference onnxruntime-fp16 is fp16, lower than onnxruntime" in _error_line(proc)
    proc = _cli(*args, "--allow-low-precision-reference", "--report", tmp_path / "b")
    assert proc.returncode in (0, 1) and _complete(tmp_path / "b")["reference"] == "onnxruntime-fp16"


# ----------------------------------------------------------------------------- report paths


def test_report_paths_that_cannot_be_written_are_one_line(demo_artifacts, tmp_path):
    args = ["run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--backends", "paddle,onnxruntime"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = _cli(*args, "--report", afile)
    assert proc.returncode == 2 and f"{afile}: --report must be a folder, and this is a file" in _error_line(proc)
    proc = _cli(*args, "--report", afile / "sub")
    assert proc.returncode == 2 and f"{afile / 'sub'}: cannot write the report there" in _error_line(proc)
    proc = _cli(*args, "--report", "/sys/parity-report-test")  # not writable, even for root
    assert proc.returncode == 2 and "/sys/parity-report-test: cannot write the report there" in _error_line(proc)


def test_a_full_disk_is_one_line(demo_artifacts, tmp_path, monkeypatch, capsys):
    import errno

    from parity import report
    from parity.cli import main

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "_write_files", full)
    code = main(["run", *map(str, _model_args(demo_artifacts)), "--clips", str(demo_artifacts.val_list), "--backends", "paddle,onnxruntime",
                 "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'r'}: cannot write the report there: No space left on device" in err
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


# ----------------------------------------------------------------------------- interrupts and determinism


def test_sigint_at_any_moment_leaves_one_complete_report(demo_artifacts, tmp_path):
    report = tmp_path / "report"
    args = ["run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--backends", "paddle,onnxruntime", "--report", report]
    start = time.monotonic()
    assert _cli(*args).returncode == 0
    duration = time.monotonic() - start
    finished = {_complete(report)["finished"]}  # a new report appears at most once per run
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98):
        proc = subprocess.Popen([sys.executable, "-m", "parity", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err, err[-2000:]
        # 130: interrupted, reported; -2: the signal came during interpreter shutdown (Python has reset
        # SIGINT to its default by then), after the report was in place
        assert proc.returncode in (0, 130, -signal.SIGINT), (fraction, proc.returncode, err[-2000:])
        data = _complete(report)  # old or new, never a mix: results.json and index.html of one run
        if proc.returncode == 130:
            assert "parity: interrupted" in err
        finished.add(data["finished"])
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written folder left


# The tests that send a real signal to their own process run it in a fresh Python: never in pytest's own process,
# whose threads and handlers are whatever the tests before left.
ROOT = Path(__file__).resolve().parent.parent


def _fresh_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)


def _isolated_run_until_its_backends_start(demo_artifacts, tmp_path):
    """``parity run --isolate`` with its own TMPDIR, once the first backend process has made its log there."""
    temp = tmp_path / "temp"
    temp.mkdir()
    args = ["run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--backends", "paddle,onnxruntime", "--isolate",
            "--report", tmp_path / "report"]
    proc = subprocess.Popen([sys.executable, "-m", "parity", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(temp.glob("parity-backend-*.log")):
        time.sleep(0.01)
    return proc, temp


def test_a_sigterm_is_an_interruption_that_leaves_nothing_behind(demo_artifacts, tmp_path):
    proc, temp = _isolated_run_until_its_backends_start(demo_artifacts, tmp_path)
    proc.send_signal(signal.SIGTERM)  # a cancelled CI job
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err and proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "parity: interrupted (SIGTERM)"
    assert not list(temp.glob("parity-backend-*")) and not (tmp_path / "report").exists()  # backends stopped, their logs removed


def test_a_sigterm_after_paddle_loaded_is_still_an_interruption():
    script = """
import os, signal, time
from parity.signals import handle_interrupts
from parity.optional import lazy
handle_interrupts()
lazy("paddle").__version__  # paddle's import puts its own C handler on SIGTERM: a crash report, then abort
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
except KeyboardInterrupt:
    print("interrupted")
"""
    done = _fresh_python(script)
    assert done.stdout.strip() == "interrupted" and "FatalError" not in done.stderr, done.stderr[-2000:]


def test_the_backend_processes_of_a_killed_run_end_and_remove_their_logs(demo_artifacts, tmp_path):
    proc, temp = _isolated_run_until_its_backends_start(demo_artifacts, tmp_path)
    proc.kill()  # nothing of the run's own cleanup runs
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and list(temp.glob("parity-backend-*")):
        time.sleep(0.1)
    assert not list(temp.glob("parity-backend-*"))


def test_a_held_ctrl_c_lands_after_the_block_whichever_thread_the_kernel_hands_it_to():
    done = _fresh_python("""
import os, signal, threading, time
from parity.signals import held
stop = threading.Event()
other = threading.Thread(target=stop.wait)  # a thread that does not block SIGINT, as ONNX Runtime's and tqdm's
other.start()
try:
    with held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        print("the block finished")
except KeyboardInterrupt:
    print("then the Ctrl-C landed")
stop.set()
other.join()
""")
    assert done.stdout.splitlines() == ["the block finished", "then the Ctrl-C landed"], done.stderr[-2000:]


def test_a_ctrl_c_during_the_command_lines_imports_is_one_line():
    proc = subprocess.Popen([sys.executable, "-m", "parity", "backends"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "numpy" not in maps.read_text():  # numpy loads amid the command line's imports
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "parity: interrupted"


CTRL_C_AT_SPAWN = """
import multiprocessing.resource_tracker, multiprocessing.util, os, signal
multiprocessing.resource_tracker.ensure_running()  # its own start is not the one under test
real, pids = multiprocessing.util.spawnv_passfds, []
def spawn_then_interrupt(*args):  # a Ctrl-C the moment the child exists, before it has been sent what to run
    pids.append(real(*args))
    os.kill(os.getpid(), signal.SIGINT)
    return pids[-1]
multiprocessing.util.spawnv_passfds = spawn_then_interrupt
def reap():  # every child has ended, so all it printed is in
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped by its Process object
            pass
"""


def test_a_ctrl_c_while_a_decode_worker_starts_lands_once_it_has_its_orders():
    done = _fresh_python(CTRL_C_AT_SPAWN + """
import multiprocessing as mp
from parity import stream
try:
    stream._Worker(mp.get_context("spawn"))
except KeyboardInterrupt:
    [worker] = [w for w in stream._LIVE if w.process.pid in pids]  # registered, so a stream's end kills it
    worker.conn.send(None)  # it reads its orders whole and answers: stop
    worker.process.join(60)
    print("worker exit code", worker.process.exitcode)
    worker.kill()
reap()
""")
    assert done.stdout.strip() == "worker exit code 0" and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_ctrl_c_while_a_backend_process_starts_lands_once_it_has_its_orders():
    done = _fresh_python(CTRL_C_AT_SPAWN + """
from parity.backends import ModelArtifacts
from parity.backends.isolated import IsolatedRunner
runner = IsolatedRunner("fixtures.defects:env_runner", ModelArtifacts(), name="x")
try:
    runner.activate()
except KeyboardInterrupt:
    print("backend exit code", runner._process.exitcode)  # told to stop by the interrupted activation, and it did
reap()
""")
    assert done.stdout.strip() == "backend exit code 0" and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_two_runs_give_the_same_results_apart_from_timings(demo_run_config, parity_cache, tmp_path):
    import dataclasses

    from parity.report import write_report
    from parity.run import run

    def load(name):
        cfg = dataclasses.replace(demo_run_config, report=str(tmp_path / name))
        write_report(run(cfg, cache=parity_cache), cfg.report)
        data = _strict(tmp_path / name / "results.json")
        for b in data["backends"]:
            for key in ("latency_ms", "p50_ms", "p95_ms", "mean_ms", "clips_per_s"):
                b.pop(key, None)
        for key in ("seconds",):
            data["run"].pop(key)
        data["run"]["decode"].pop("decode_seconds")
        data["config"].pop("report")
        data.pop("finished")
        return data

    # Bitwise, floats included: the same clips through the same models with the same thread count in one process;
    # only timings differ. (Across thread counts the reductions reorder: compare within the noise floor there.)
    assert load("a") == load("b")


def test_a_decoder_that_crashes_its_process_costs_only_that_clip(demo_artifacts, tmp_path):
    """A native crash while decoding one clip (here a real SIGSEGV in the decode worker) is that clip's error."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    # sitecustomize runs in every new Python process, the spawned decode workers included
    (hooks / "sitecustomize.py").write_text(
        "import os, signal\n"
        "def _arm():\n"
        "    import parity.inputs as inputs\n"
        "    real = inputs.load_clip_frames\n"
        "    def crashing(path, *a, **k):\n"
        "        if 'move_left_000' in str(path):\n"
        "            os.kill(os.getpid(), signal.SIGSEGV)\n"
        "        return real(path, *a, **k)\n"
        "    inputs.load_clip_frames = crashing\n"
        "import sys\n"
        "if any('spawn_main' in a for a in sys.orig_argv):  # only in the spawned decode workers\n"
        "    _arm()\n"
    )
    proc = _cli("run", *_model_args(demo_artifacts), "--clips", demo_artifacts.val_list, "--backends", "paddle,onnxruntime", "--workers", "2",
                "--report", tmp_path / "r", env={"PYTHONPATH": str(hooks)})
    data = _complete(tmp_path / "r")
    crashed = [c for c in data["clips"] if c["status"] == "error"]
    assert [Path(c["path"]).stem for c in crashed] == ["move_left_000"] and "the decoder process died" in crashed[0]["error"]
    assert proc.returncode == 0 and data["comparisons"][0]["clips_compared"] == len(data["clips"]) - 1
    assert data["run"]["decode"]["worker_restarts"] >= 1
