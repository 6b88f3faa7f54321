"""Golden outputs: save from a Paddle run, gate ONNX Runtime alone against them."""
import json
import shutil

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
