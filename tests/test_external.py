"""Your own deployed program as a backend: by command (per clip, per batch) or by the logits it saved."""
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity.cli import main
from parity.errors import HarnessError
from parity.run import run

pytestmark = pytest.mark.slow
PROGRAMS = Path(__file__).resolve().parent.parent / "fixtures" / "programs"
PY = sys.executable


def _deploy(onnx, size=112):
    return f"{PY} {PROGRAMS / 'cpp_like_deploy.py'} {onnx} {{video}} {{out}} --num-seg 8 --short {round(size * 256 / 224)} --size {size}"


def test_a_separate_cpp_like_program_runs_on_every_clip_and_preprocessing_explains_it(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    from parity.report import write_report

    cfg = dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime"], external={"deploy": _deploy(demo_artifacts.onnx)},
                              preprocess="paddlevideo,cpp", report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    deploy = next(c for c in result.comparisons if c.backend == "deploy")
    assert deploy.clips_compared == len(result.clips) and not next(b for b in result.backends if b.name == "deploy").clip_errors
    (attribution,) = result.preprocessing_attribution
    m = result.hop_matrix
    against_cpp = m["max_abs"][m["backends"].index("deploy")][m["backends"].index("paddle[cpp]")]
    # the program differs from the reference by about what preprocessing alone does; from the reference on its own
    # preprocessing by far less: the difference is preprocessing, not the runtime
    assert deploy.max_abs == pytest.approx(attribution["max_abs"], rel=0.05) and against_cpp < deploy.max_abs / 100
    html = write_report(result, cfg.report).read_text()
    assert "your program:" in html and "cpp_like_deploy.py" in html
    from parity.conclusion import lines

    assert any(line.startswith("why: deploy: explained by preprocessing: deploy agrees with paddle[cpp]") for line in lines(result))


def test_a_tensor_program_passes_at_fp32_against_onnxruntime(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    program = f"{PY} {PROGRAMS / 'tensor_runner.py'} {demo_artifacts.onnx} {{tensor}} {{out}}"
    cfg = dataclasses.replace(demo_run_config, backends=["onnxruntime"], reference="onnxruntime", external={"mine": program},
                              report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    (mine,) = result.comparisons
    assert mine.backend == "mine" and mine.passed and mine.max_abs < 1e-5 and result.verdict == "pass"


def test_a_program_failing_on_some_clips_gives_per_clip_errors(demo_artifacts, tmp_path, capsys):
    clips = tmp_path / "clips"
    shutil.copytree(demo_artifacts.val_list.parent, clips)
    first, second = [clips / line.split()[0] for line in (clips / "val.txt").read_text().splitlines()[:2]]
    crash, hang = first.with_name("crash_" + first.name), second.with_name("hang_" + second.name)
    first.rename(crash)
    second.rename(hang)
    (clips / "val.txt").write_text((clips / "val.txt").read_text().replace(first.name, crash.name).replace(second.name, hang.name))
    probe = f"{PY} {PROGRAMS / 'video_probe.py'} {{video}} {{out}} 4"
    code = main(["run", "--onnx", str(demo_artifacts.onnx), "--backends", "onnxruntime", "--reference", "onnxruntime", "--clips",
                 str(clips / "val.txt"), "--external", f"probe={probe}", "--external-timeout", "5", "--report", str(tmp_path / "r")])
    assert code == 1
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    errors = next(b for b in data["backends"] if b["name"] == "probe")["clip_errors"]
    assert set(errors) == {str(crash), str(hang)}
    assert "exited with code 139: Segmentation fault (simulated) in decode_frame" in errors[str(crash)] and "video_probe.py" in errors[str(crash)]
    assert "timed out after 5 s and was killed" in errors[str(hang)]
    (comparison,) = data["comparisons"]
    assert comparison["clips_compared"] == len(data["clips"]) and any("the backend failed on 2 clips" in r for r in comparison["reasons"])
    assert "Traceback" not in capsys.readouterr().err


def test_clip_names_cannot_run_anything(demo_artifacts, tmp_path):
    evil = tmp_path / "a;b'c\"$(touch PWNED)`touch PWNED2`.mp4"
    shutil.copy(demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0], evil)
    probe = f"{PY} {PROGRAMS / 'video_probe.py'} {{video}} {{out}} 4"
    code = main(["run", "--onnx", str(demo_artifacts.onnx), "--backends", "onnxruntime", "--reference", "onnxruntime", "--clips", str(evil),
                 "--external", f"probe={probe}", "--report", str(tmp_path / "r")], )
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert not next(b for b in data["backends"] if b["name"] == "probe")["clip_errors"] and code == 1  # ran (and differs, as it should)
    assert not list(Path.cwd().glob("PWNED*")) and not list(tmp_path.glob("PWNED*"))
    with pytest.raises(HarnessError, match="pass placeholders as their own arguments"):
        from parity.backends.external import parse_command

        parse_command("x", "sh -c 'prog {video} > {out}'")
    parse_command("x", "sh -c 'prog \"$1\" > \"$2\"' _ {video} {out}")


def test_saved_logits_give_the_same_comparison_as_the_live_command(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    program = f"{PY} {PROGRAMS / 'tensor_runner.py'} {demo_artifacts.onnx} {{tensor}} {{out}}"
    live = run(dataclasses.replace(demo_run_config, backends=["paddle"], external={"device": program}, report=str(tmp_path / "a")),
               cache=parity_cache)
    # another process writes the device's logits into an .npz keyed by clip path, away from the run
    tensors = tmp_path / "tensors"
    assert main(["preprocess", "--clips", str(demo_artifacts.val_list), "--out", str(tensors), "--num-seg", "8", "--short-size", "128",
                 "--target-size", "112"]) == 0
    manifest = json.loads((tensors / "manifest.json").read_text())
    script = (f"import json, sys, numpy as np, onnxruntime as ort\n"
              f"m = json.load(open({str(tensors / 'manifest.json')!r}))\n"
              f"s = ort.InferenceSession({str(demo_artifacts.onnx)!r}, providers=['CPUExecutionProvider'])\n"
              f"np.savez({str(tmp_path / 'device.npz')!r}, **{{c['clip']: s.run(None, {{s.get_inputs()[0].name: "
              f"np.load({str(tensors)!r} + '/' + c['tensor'])}})[0].reshape(-1) for c in m['clips']}}, extra_clip=np.zeros(4))\n")
    subprocess.run([PY, "-c", script], check=True)
    saved = run(dataclasses.replace(demo_run_config, backends=["paddle"], logits_files={"device": str(tmp_path / "device.npz")},
                                    report=str(tmp_path / "b")), cache=parity_cache)
    a, b = (next(c for c in r.comparisons if c.backend == "device") for r in (live, saved))
    assert a.passed == b.passed and a.max_abs == pytest.approx(b.max_abs, abs=1e-7) and a.top1_agreement == b.top1_agreement
    assert len(manifest["clips"]) == len(saved.clips)
    assert any("extra_clip" in n for n in saved.notes)
    assert np.allclose(live.logits["device"], saved.logits["device"], atol=1e-7)


def test_a_program_is_a_backend_in_golden_gates_and_the_pytest_plugin(demo_artifacts, tmp_path):
    import xml.etree.ElementTree as ET

    program = f"{PY} {PROGRAMS / 'tensor_runner.py'} {demo_artifacts.onnx} {{tensor}} {{out}}"
    live = tmp_path / "live"
    assert main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx), "--clips",
                 str(demo_artifacts.val_list), "--backends", "paddle,onnxruntime", "--report", str(live)]) == 0
    assert main(["golden", "save", str(live), "--to", str(tmp_path / "golden")]) == 0
    # a deploy box without Paddle: the program against the stored reference
    assert main(["run", "--golden", str(tmp_path / "golden"), "--onnx", str(demo_artifacts.onnx), "--backends", "onnxruntime",
                 "--external", f"mine={program}", "--report", str(tmp_path / "g")]) == 0
    gated = json.loads((tmp_path / "g" / "results.json").read_text())
    assert {c["backend"]: c["passed"] for c in gated["comparisons"]} == {"onnxruntime": True, "mine": True}
    # the pytest gate: one case per (program, clip)
    (tmp_path / "parity.toml").write_text(
        f'paddle_model = "{demo_artifacts.paddle_model.model_file}"\nonnx = "{demo_artifacts.onnx}"\nclips = "{demo_artifacts.val_list}"\n'
        f'backends = ["paddle"]\nreport = "{tmp_path / "pr"}"\n\n[external]\nmine = "{program}"\n')
    proc = subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "--parity-config", "parity.toml",
                           "--junit-xml", "out.xml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    names = [c.get("name") for c in ET.parse(tmp_path / "out.xml").getroot().iter("testcase")]
    assert "mine[set]" in names and sum(n.startswith("mine[") for n in names) == len(demo_artifacts.val_list.read_text().splitlines()) + 1  # and mine[set]
