"""A gate that travels and speaks first (issue 22): a config and golden outputs committed with the clips work in
another checkout, golden clips are found by content, `parity preprocess` reads the model, the pytest gate collects
only itself, and the terminal's first lines say what was gated and why it failed."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


def _cli(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "parity", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PARITY_PROGRESS": "0"}, timeout=900)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tree(demo_artifacts, tmp_path_factory):
    """A model repository: model files, four clips with a relative list, a golden folder and a gate config."""
    root = tmp_path_factory.mktemp("repo") / "repo"
    (root / "model").mkdir(parents=True)
    (root / "clips").mkdir()
    onnx = root / "model" / "pptsm.onnx"
    shutil.copy(demo_artifacts.onnx, onnx)
    base = demo_artifacts.val_list.parent
    lines = demo_artifacts.val_list.read_text().split("\n")[:4]
    for line in lines:
        shutil.copy(base / line.split()[0], root / "clips" / Path(line.split()[0]).name)
    (root / "clips" / "list.txt").write_text("".join(f"{Path(ln.split()[0]).name} {ln.split()[1]}\n" for ln in lines))
    live = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", onnx, "--clips", root / "clips" / "list.txt",
                "--backends", "paddle,onnxruntime", "--report", root / "live")
    assert live.returncode == 0, live.stderr
    assert _cli("golden", "save", root / "live", "--to", root / "golden").returncode == 0
    gate = _cli("run", "--golden", root / "golden", "--onnx", onnx, "--clips", root / "clips" / "list.txt", "--backends", "onnxruntime",
                "--report", root / "reports" / "gate", "--write-config", root / "gate.toml")
    assert gate.returncode == 0, gate.stderr
    return root


def test_the_config_and_golden_outputs_work_in_another_checkout(tree, tmp_path):
    """Fails before: --write-config wrote absolute paths, and golden outputs matched clips by absolute path."""
    text = (tree / "gate.toml").read_text()
    assert str(tree) not in text and 'onnx = "model/pptsm.onnx"' in text and 'golden = "golden"' in text
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(tree, moved)
    proc = _cli("run", "--config", moved / "gate.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((moved / "reports" / "gate" / "results.json").read_text())
    assert data["artifacts"]["onnx"] == str(moved / "model" / "pptsm.onnx")
    assert all(c["status"] == "ok" for c in data["clips"]) and data["comparisons"][0]["clips_compared"] == 4
    gate = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(moved), "--parity-config", "gate.toml"],
                          cwd=moved, capture_output=True, text=True, timeout=900)
    assert gate.returncode == 0, gate.stdout[-3000:]


def test_golden_clips_are_found_by_content_wherever_they_are(tree, demo_artifacts, tmp_path):
    """The same clips under other names in another folder are the same clips. Fails before: 'not in the golden outputs'."""
    other = tmp_path / "renamed"
    other.mkdir()
    lines = (tree / "clips" / "list.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        name = line.split()[0]
        shutil.copy(tree / "clips" / name, other / f"clip{i}{Path(name).suffix}")
    (other / "list.txt").write_text("".join(f"clip{i}{Path(ln.split()[0]).suffix} {ln.split()[1]}\n" for i, ln in enumerate(lines)))
    assert main(["run", "--golden", str(tree / "golden"), "--onnx", str(tree / "model" / "pptsm.onnx"), "--clips", str(other / "list.txt"),
                 "--backends", "onnxruntime", "--report", str(tmp_path / "r")]) == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["comparisons"][0]["clips_compared"] == 4


def test_preprocess_reads_the_model_or_says_its_defaults(tree, demo_artifacts, tmp_path, capsys):
    """Fails before: without flags, `parity preprocess` wrote 8x224x224 tensors for the demo's 112 model, silently."""
    clip = next((tree / "clips").glob("*.mp4"), None) or next(p for p in (tree / "clips").iterdir() if p.suffix != ".txt")
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "m.npy"), "--onnx", str(tree / "model" / "pptsm.onnx")]) == 0
    from parity.artifacts.model_files import model_input
    from parity.backends import ModelArtifacts

    _, t, size = model_input(ModelArtifacts(onnx=tree / "model" / "pptsm.onnx"))
    assert size != 224 and np.load(tmp_path / "m.npy").shape == (1, t, 3, size, size)
    capsys.readouterr()
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "d.npy")]) == 0
    assert "no model given (--onnx or --paddle-model), so PP-TSM's defaults: T 8, crop 224" in capsys.readouterr().err
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "x.npy"), "--onnx", str(tree / "model" / "pptsm.onnx"), "--target-size", "224"]) == 2
    assert "but --target-size 224 was given" in capsys.readouterr().err


def test_the_pytest_gate_collects_only_itself(tree, tmp_path):
    """Run from a repository root with tests of its own. Fails before: the repository's test ran too, and the header
    said 'collected 0 items' before the gate's items passed."""
    repo = tmp_path / "repo"
    shutil.copytree(tree, repo)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_own.py").write_text("def test_own():\n    raise AssertionError('the repository test ran')\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(repo), "--parity-config", "gate.toml"],
                          cwd=repo, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "collected 6 items" in proc.stdout and "test_own" not in proc.stdout  # 4 clips, onnxruntime[set], verdict


def test_a_reference_that_cannot_run_is_said_before_decoding(tree, tmp_path, capsys):
    """Fails before: every clip was decoded, then 'reference paddle did not run', with no hint of --reference."""
    assert main(["run", "--onnx", str(tree / "model" / "pptsm.onnx"), "--clips", str(tree / "clips" / "list.txt"),
                 "--backends", "paddle,onnxruntime", "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "reference paddle cannot run: no Paddle model given (--paddle-model)" in err and "--reference onnxruntime" in err
    assert not (tmp_path / "r").exists()


def test_the_conclusion_comes_first(demo_artifacts, defective_onnx, tree, tmp_path):
    """What was gated and why it failed, in the first lines (a localized conv defect names its node and Paddle op)."""
    proc = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", defective_onnx("conv_weight_x1.05"),
                "--clips", tree / "clips" / "list.txt", "--backends", "paddle,onnxruntime", "--localize", "--report", tmp_path / "r")
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[:3]
    assert first[0].startswith("gated: model pptsm_v2 (paddle ") and "onnx " in first[0] and "4 clips" in first[0]
    assert first[1].startswith("verdict: FAIL")
    assert first[2].startswith("why: onnxruntime: diverges first at ONNX node ") and "= Paddle conv2d" in first[2]


def test_a_lint_finding_is_the_conclusion(demo_artifacts, tree, tmp_path):
    import onnx

    model = onnx.load(str(demo_artifacts.onnx))
    node = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    next(a for a in node.attribute if a.name == "epsilon").f = 1.1e-5  # numerically harmless, still not what was exported
    onnx.save(model, str(tmp_path / "lint.onnx"))
    proc = _cli("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", tmp_path / "lint.onnx",
                "--clips", tree / "clips" / "list.txt", "--backends", "paddle,onnxruntime", "--report", tmp_path / "r")
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[:3]
    assert first[1].startswith("verdict: FAIL") and first[2].startswith("why: lint finding normalization-epsilon at ") and "(Paddle " in first[2]


def test_baseline_and_compare_releases_from_the_command_line(demo_artifacts, tree, tmp_path, capsys):
    """`run --baseline PREVIOUS` puts the previous release beside this one (results.json, report, terminal) without
    touching the verdict; `compare-releases` lists saved reports side by side."""
    from fixtures.defects import scale_conv_weight

    scale_conv_weight(tree / "model" / "pptsm.onnx", tmp_path / "next.onnx", factor=1.001)
    args = ["--paddle-model", str(demo_artifacts.paddle_model.model_file), "--clips", str(tree / "clips" / "list.txt"),
            "--backends", "paddle,onnxruntime", "--tol", "fp32.atol=10", "--tol", "fp32.rtol=10"]
    assert main(["run", *args, "--onnx", str(tree / "model" / "pptsm.onnx"), "--report", str(tmp_path / "r1")]) == 0
    capsys.readouterr()
    assert main(["run", *args, "--onnx", str(tmp_path / "next.onnx"), "--baseline", str(tmp_path / "r1"), "--report", str(tmp_path / "r2")]) == 0
    data = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert data["baseline"]["backends"] and data["per_class"] is not None
    assert main(["compare-releases", str(tmp_path / "r1"), str(tmp_path / "r2")]) == 0
    assert "onnxruntime" in capsys.readouterr().out
    assert main(["compare-releases", str(tmp_path / "r1")]) == 2
