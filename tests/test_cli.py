"""The command line as a user meets it: exit codes, one-line errors, bad clips."""
import json
import subprocess
import sys

import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


def _args(art, report, onnx=None, clips=None):
    return [
        "run",
        "--paddle-model", str(art.paddle_model.model_file),
        "--onnx", str(onnx or art.onnx),
        "--clips", str(clips or art.val_list),
        "--report", str(report),
    ]


def test_missing_model_exits_2_with_one_line(tmp_path, capsys, demo_artifacts):
    code = main(["run", "--paddle-model", str(tmp_path / "nope"), "--onnx", str(demo_artifacts.onnx), "--clips", str(demo_artifacts.val_list)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and str(tmp_path / "nope") in err and err.startswith("parity: error:")


def test_missing_onnx_and_unknown_backend_exit_2(tmp_path, capsys, demo_artifacts):
    assert main(_args(demo_artifacts, tmp_path, onnx=tmp_path / "x.onnx")) == 2
    assert "x.onnx: ONNX model not found" in capsys.readouterr().err
    assert main(_args(demo_artifacts, tmp_path) + ["--backends", "paddle,warp-drive"]) == 2
    assert "unknown backend(s) warp-drive" in capsys.readouterr().err


def test_conflicting_num_seg_exits_2(tmp_path, capsys, demo_artifacts):
    assert main(_args(demo_artifacts, tmp_path) + ["--num-seg", "16"]) == 2
    assert "the model takes num-seg 8, but --num-seg 16 was given" in capsys.readouterr().err


def test_no_readable_clip_exits_2(tmp_path, capsys, demo_artifacts):
    listing = tmp_path / "list.txt"
    listing.write_text("gone.mp4 0\n")
    assert main(_args(demo_artifacts, tmp_path / "r", clips=listing)) == 2
    assert "no readable clip" in capsys.readouterr().err


def test_bad_clips_are_listed_and_the_rest_runs(tmp_path, capsys, demo_artifacts, broken_clip_list):
    code = main(_args(demo_artifacts, tmp_path, clips=broken_clip_list))
    out = capsys.readouterr()
    assert code == 0, out
    data = json.loads((tmp_path / "results.json").read_text())
    errors = {c["path"]: c["error"] for c in data["clips"] if c["status"] == "error"}
    assert len(errors) == 2
    corrupt = next(p for p in errors if p.endswith("corrupt.mp4"))
    missing = next(p for p in errors if p.endswith("missing.avi"))
    assert "cannot decode" in errors[corrupt] and "file not found" in errors[missing]
    ok = [c for c in data["clips"] if c["status"] == "ok"]
    assert len(ok) == len(data["clips"]) - 2
    assert all(c["clips_compared"] == len(ok) for c in data["comparisons"])
    assert "Traceback" not in out.err + out.out
    html = (tmp_path / "index.html").read_text()
    assert "corrupt.mp4" in html and "missing.avi" in html


def test_perturbed_weight_exits_1_naming_backend_and_clips(tmp_path, capsys, demo_artifacts, defective_onnx):
    code = main(_args(demo_artifacts, tmp_path, onnx=defective_onnx("conv_weight_x1.05")))
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: FAIL" in out and "onnxruntime " in out and "broke:" in out
    data = json.loads((tmp_path / "results.json").read_text())
    failing = [c for c in data["comparisons"] if not c["passed"]]
    assert any(c["backend"] == "onnxruntime" for c in failing)
    assert all(c["failed_clips"] for c in failing)


def test_console_script_clean_run_exits_0(tmp_path, demo_artifacts):
    proc = subprocess.run(
        [sys.executable, "-m", "parity", *_args(demo_artifacts, tmp_path), "--backends", "paddle,onnxruntime"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict: PASS" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_convert_command_reports_the_repair(tmp_path, capsys, demo_artifacts):
    assert main(["convert", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "repaired: replaced Squeeze" in out and (tmp_path / "m.conversion.json").is_file()


def _timeless(report) -> dict:
    """results.json without what differs between two runs of one command by design: timings, the clock, process ids."""
    data = json.loads((report / "results.json").read_text())
    for b in data["backends"]:
        for key in ("latency_ms", "p50_ms", "p95_ms", "mean_ms", "clips_per_s", "pid"):
            b.pop(key, None)
    data["run"].pop("seconds")
    data["run"]["decode"].pop("decode_seconds")
    data["config"].pop("report")
    data.pop("finished")
    return data


def test_two_cli_runs_under_other_hash_seeds_write_the_same_results(tmp_path, demo_artifacts):
    """Two processes, not two runs in one: anything ordered by hash() (a set of names, hash(name)) differs between them.

    PYTHONHASHSEED 1 and 2 order the compared names (onnxruntime, onnxruntime-fp16) differently under hash(). The
    numbers must be bitwise equal: the same clips through the same models, same thread counts, on one machine.
    """
    import os

    reports = []
    for seed in ("1", "2"):
        report = tmp_path / f"seed{seed}"
        proc = subprocess.run([sys.executable, "-m", "parity", *_args(demo_artifacts, report)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        reports.append(_timeless(report))
    assert [c["backend"] for c in reports[0]["comparisons"]] == ["onnxruntime", "onnxruntime-fp16"]  # the registry's order
    assert reports[0] == reports[1]


def test_a_ctrl_c_that_a_library_made_its_own_error_is_an_interruption():
    script = """
import os, signal, time
from parity import cli

def paddle_like(args):  # as `import paddle` does: the KeyboardInterrupt inside becomes its own error
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        raise RuntimeError("Failed to import paddle. Please ensure paddle is installed.") from None

def refused(args):
    raise cli.HarnessError("x.onnx: no such file")

cli.COMMANDS["backends"] = (cli.COMMANDS["backends"][0], paddle_like)
print(cli.main(["backends"]))
cli.COMMANDS["backends"] = (cli.COMMANDS["backends"][0], refused)
print(cli.main(["backends"]))  # the next call in this process is not interrupted by that one's Ctrl-C
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)  # the caller's handler is back
"""
    # a real signal, so in a fresh Python, never in pytest's own process
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["130", "2", "True"], done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-2:] == ["parity: interrupted", "parity: error: x.onnx: no such file"]
