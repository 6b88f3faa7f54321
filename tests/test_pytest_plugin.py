"""`parity run --write-config` then `pytest --parity-config`: the comparison as a pytest/JUnit gate."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


def _config(demo_artifacts, folder, onnx=None):
    folder.mkdir(parents=True, exist_ok=True)
    code = main([
        "run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(onnx or demo_artifacts.onnx),
        "--clips", str(demo_artifacts.val_list), "--report", str(folder / "cli-report"), "--write-config", str(folder / "parity.toml"),
    ])
    return code, folder / "parity.toml"


def _pytest(folder, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(folder), "--parity-config", "parity.toml", *args],
        cwd=folder, capture_output=True, text=True,
    )
    return proc


def _cases(xml_path):
    cases = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        failure = case.find("failure")
        cases[case.get("name")] = None if failure is None else failure.get("message", "") + (failure.text or "")
    return cases


def test_clean_config_gives_one_case_per_backend_and_clip(demo_artifacts, tmp_path):
    code, toml = _config(demo_artifacts, tmp_path)
    assert code == 0
    proc = _pytest(tmp_path, "--junitxml", "out.xml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    cases = _cases(tmp_path / "out.xml")
    n_clips = len(demo_artifacts.val_list.read_text().split("\n")) - 1
    backends = ["onnxruntime", "onnxruntime-fp16"]
    assert len(cases) == len(backends) * (n_clips + 1) + 1  # and the verdict
    assert {f"{b}[set]" for b in backends} <= set(cases)
    assert all(v is None for v in cases.values())
    assert (tmp_path / "cli-report" / "index.html").is_file()  # the session wrote the report
    assert "parity report:" in proc.stdout


def test_perturbed_onnx_fails_exactly_the_affected_cases(demo_artifacts, defective_onnx, tmp_path):
    from fixtures.defects import scale_conv_weight

    onnx = tmp_path / "slightly_off.onnx"
    scale_conv_weight(demo_artifacts.onnx, onnx, factor=1.0005, index=3)  # breaks some clips, not all
    code, toml = _config(demo_artifacts, tmp_path, onnx)
    assert code == 1
    results = json.loads((tmp_path / "cli-report" / "results.json").read_text())
    proc = _pytest(tmp_path, "--junitxml", "out.xml")
    assert proc.returncode == 1
    cases = _cases(tmp_path / "out.xml")
    failed = {name for name, msg in cases.items() if msg is not None}
    root = demo_artifacts.val_list.parent
    expected = {f"{c['backend']}[{Path(p).relative_to(root)}]" for c in results["comparisons"] for p in c["failed_clips"]}
    expected |= {f"{c['backend']}[set]" for c in results["comparisons"] if not c["passed"]} | {"verdict"}
    assert failed and failed == expected
    assert len(failed) < len(cases) - 2  # some clips still pass
    message = cases[sorted(n for n in failed if n != "verdict" and not n.endswith("[set]"))[0]]
    assert "clips outside tolerance" in cases["verdict"] and cases["onnxruntime[set]"] in cases["verdict"]
    assert "max abs" in message and "tolerance atol" in message


def test_k_and_x_select_and_stop(demo_artifacts, tmp_path):
    _config(demo_artifacts, tmp_path)
    proc = _pytest(tmp_path, "--junitxml", "k.xml", "-k", "fp16 and set")
    assert proc.returncode == 0
    assert list(_cases(tmp_path / "k.xml")) == ["onnxruntime-fp16[set]"]
    toml = (tmp_path / "parity.toml").read_text().replace("atol = 0.0001", "atol = 1e-9").replace("rtol = 0.001", "rtol = 1e-9")
    (tmp_path / "parity.toml").write_text(toml)
    proc = _pytest(tmp_path, "-x", "--junitxml", "x.xml")
    assert proc.returncode == 1
    cases = _cases(tmp_path / "x.xml")
    assert sum(v is not None for v in cases.values()) == 1 and len(cases) == 1


def test_bad_config_is_a_usage_error(tmp_path):
    (tmp_path / "parity.toml").write_text('clips = "nowhere.txt"\nwarp = 9\n')
    proc = _pytest(tmp_path)
    assert proc.returncode == 4 and "unknown setting 'warp'" in proc.stderr


def test_a_run_that_cannot_run_fails_every_item_with_its_reason(demo_artifacts, tmp_path):
    (tmp_path / "parity.toml").write_text(
        f'paddle_model = "{tmp_path / "gone.json"}"\nonnx = "{demo_artifacts.onnx}"\nclips = "{demo_artifacts.val_list}"\n'
        f'backends = ["paddle", "onnxruntime"]\nreport = "{tmp_path / "r"}"\n'
    )
    proc = _pytest(tmp_path, "--junitxml", "out.xml")
    assert proc.returncode == 1
    cases = _cases(tmp_path / "out.xml")
    assert len(cases) > 1 and all(msg and "the parity run could not run" in msg and "gone.json" in msg for msg in cases.values())
    assert "Traceback" not in proc.stdout


def test_a_session_without_the_gate_loads_nothing_of_parity(tmp_path):
    """Every pytest session where pptsm-parity is installed loads its plugin: without --parity-config it costs nothing,
    not parity's run machinery, numpy or Paddle (it once imported the whole harness, about 0.3 s, at every pytest start)."""
    (tmp_path / "test_one.py").write_text(
        "import sys\n\ndef test_loaded():\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith('parity') or m in ('numpy', 'paddle'))\n"
        "    assert loaded == ['parity', 'parity.pytest_plugin'], loaded\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "parity" in subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True).stdout
