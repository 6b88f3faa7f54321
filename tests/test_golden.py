"""Golden outputs: save from a Paddle run, gate ONNX Runtime alone against them."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture()
def golden_dir(demo_artifacts, tmp_path):
    clips = tmp_path / "clips"
    shutil.copytree(demo_artifacts.val_list.parent, clips)  # a copy we may change
    live = tmp_path / "live"
    assert main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
                 "--clips", str(clips / "val.txt"), "--report", str(live)]) == 0
    assert main(["golden", "save", str(live), "--to", str(tmp_path / "golden")]) == 0
    return tmp_path / "golden", clips, live


def test_golden_round_trip_matches_the_live_comparison(golden_dir, demo_artifacts, tmp_path):
    golden, clips, live = golden_dir
    meta = json.loads((golden / "golden.json").read_text())
    assert meta["reference"] == "paddle" and meta["preprocess"]["num_seg"] == 8
    assert all(c["sha256"] for c in meta["clips"]) and meta["artifacts"]["paddle_model_sha256"]
    # no Paddle model at all: ONNX Runtime alone against the stored outputs
    code = main(["run", "--golden", str(golden), "--onnx", str(demo_artifacts.onnx), "--backends", "onnxruntime",
                 "--report", str(tmp_path / "g")])
    assert code == 0
    gated = json.loads((tmp_path / "g" / "results.json").read_text())
    live_data = json.loads((live / "results.json").read_text())
    assert gated["reference"] == "golden:paddle" and gated["verdict"] == live_data["verdict"] == "pass"
    (g,) = gated["comparisons"]
    (live_cmp,) = [c for c in live_data["comparisons"] if c["backend"] == "onnxruntime"]
    assert g["max_abs"] == pytest.approx(live_cmp["max_abs"], abs=1e-6) and g["top1_agreement"] == live_cmp["top1_agreement"]
    assert len(g["clips"]) == len(live_cmp["clips"])


def test_perturbed_model_fails_against_golden_too(golden_dir, defective_onnx, tmp_path):
    golden, _, _ = golden_dir
    code = main(["run", "--golden", str(golden), "--onnx", str(defective_onnx("conv_weight_x1.05")), "--backends", "onnxruntime",
                 "--report", str(tmp_path / "g")])
    assert code == 1


def test_changed_clip_is_reported_as_changed(golden_dir, demo_artifacts, tmp_path):
    golden, clips, _ = golden_dir
    first = clips / (clips / "val.txt").read_text().split()[0]
    other = clips / (clips / "val.txt").read_text().split()[2]
    shutil.copy(other, first)  # same name, different video
    code = main(["run", "--golden", str(golden), "--onnx", str(demo_artifacts.onnx), "--backends", "onnxruntime",
                 "--report", str(tmp_path / "g")])
    data = json.loads((tmp_path / "g" / "results.json").read_text())
    (changed,) = [c for c in data["clips"] if c["status"] == "error"]
    assert changed["path"] == str(first) and "changed since the golden outputs were saved" in changed["error"]
    assert code == 2  # the gate no longer measures what it did: an error of the run
    (comparison,) = data["comparisons"]  # the other clips were still compared
    assert comparison["clips_compared"] == len(data["clips"]) - 1 and comparison["passed"]


def test_golden_preprocessing_mismatch_is_an_error(golden_dir, demo_artifacts, tmp_path, capsys):
    golden, _, _ = golden_dir
    assert main(["run", "--golden", str(golden), "--onnx", str(demo_artifacts.onnx), "--backends", "onnxruntime",
                 "--preprocess", "cpp", "--report", str(tmp_path / "g")]) == 2
    assert "golden outputs use paddlevideo preprocessing" in capsys.readouterr().err
    assert main(["golden", "save", str(tmp_path / "nothing"), "--to", str(tmp_path / "x")]) == 2


# sitecustomize runs first in every new Python process (the CLI, its decode workers, isolated backends): there,
# `import paddle` raises, as on a deploy box where Paddle is not installed.
_NO_PADDLE = """
import importlib.abc, sys

class _NoPaddle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "paddle" or name.startswith("paddle."):
            raise ImportError(f"No module named {name!r} (blocked: a deploy box without Paddle)")
        return None

sys.meta_path.insert(0, _NoPaddle())
"""


def test_golden_gates_where_paddle_cannot_be_imported(golden_dir, demo_artifacts, defective_onnx, tmp_path):
    golden, _, _ = golden_dir
    hooks = tmp_path / "no-paddle"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_NO_PADDLE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH")) if p)}
    blocked = subprocess.run([sys.executable, "-c", "import paddle"], capture_output=True, text=True, env=env)
    assert blocked.returncode == 1 and "blocked: a deploy box without Paddle" in blocked.stderr  # the block holds

    def gate(onnx, report):
        return subprocess.run([sys.executable, "-m", "parity", "run", "--golden", str(golden), "--onnx", str(onnx), "--backends", "onnxruntime",
                               "--report", str(report)], capture_output=True, text=True, env=env)

    clean = gate(demo_artifacts.onnx, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    data = json.loads((tmp_path / "clean" / "results.json").read_text())
    (comparison,) = data["comparisons"]
    assert data["reference"] == "golden:paddle" and comparison["passed"] and comparison["clips_compared"] == len(data["clips"])
    defective = gate(defective_onnx("conv_weight_x1.05"), tmp_path / "defective")  # and it still gates
    assert defective.returncode == 1, defective.stderr[-2000:]
