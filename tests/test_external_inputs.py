"""Issue 18: numbers that cannot crash the report, --logits files that cannot be misread, templates whose input
and output cannot be one file, and paddle-dygraph's model settings read from the checkpoint itself."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from parity.compare import compare_logits
from parity.config import default_tolerances
from parity.errors import HarnessError
from parity.report import write_report
from parity.results import BackendRecord, ClipRecord, RunResult

PY = sys.executable


# --- 1. numbers never crash the report -----------------------------------------------------------------------------

def _odd_result(tmp_path, out: np.ndarray, ref: np.ndarray) -> RunResult:
    paths = [str(tmp_path / f"c{i}.mp4") for i in range(len(ref))]
    labels = list(range(len(ref)))
    with np.errstate(all="ignore"):  # the comparison is not under test here; the report is
        comp = compare_logits("odd", "paddle", "fp32", paths, labels, ref, out, default_tolerances()["fp32"])
    names = ["paddle", "odd"]
    values = [[0.0, float(np.nan)], [float(np.nan), 0.0]]
    frames = {p: np.zeros((2, 8, 8, 3), np.uint8) for p in paths}
    return RunResult(
        verdict="fail", reference="paddle",
        backends=[BackendRecord("paddle", "fp32", "Paddle", "ok", latency_ms=[5.0] * len(ref)),
                  BackendRecord("odd", "fp32", "yours", "ok", latency_ms=[float("nan")] * len(ref))],
        comparisons=[comp], clips=[ClipRecord(p, lab, "ok", index=i) for i, (p, lab) in enumerate(zip(paths, labels))],
        artifacts={}, tolerances={}, preprocess={"num_seg": 8, "short_size": 128, "target_size": 112, "variant": "paddlevideo"},
        environment={}, logits={"clips": np.array(paths), "paddle": ref, "odd": out}, frames=frames,
        hop_matrix={"backends": names, "max_abs": values, "top1_agreement": [[1.0, 0.0], [0.0, 1.0]]},
        diagnosis=[{"backend": "odd", "against": "paddle", "tolerance": 1e-3, "mode": "first-divergence", "clip": paths[0], "note": "",
                    "curve": [{"depth": 0, "error": 0.0, "tensor": "a"}, {"depth": 1, "error": float("inf"), "tensor": "b"},
                              {"depth": 2, "error": float("nan"), "tensor": "c"}],
                    "first_divergence": {"tensor": "b", "onnx_node": "Conv_1", "onnx_op": "Conv", "paddle_op": "conv2d",
                                         "error_out": float("inf"), "error_in": 0.0}}],
    )


ODD = {
    "all NaN": lambda ref: np.full_like(ref, np.nan),
    "all Inf": lambda ref: np.full_like(ref, np.inf),
    "one Inf logit": lambda ref: np.where(np.arange(ref.size).reshape(ref.shape) == 1, np.inf, ref).astype(np.float32),
    "all zero error": lambda ref: ref.copy(),
    "all zero logits": lambda ref: np.zeros_like(ref),
}


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("case", list(ODD))
def test_the_report_copes_with_any_numbers_and_warns_nothing(tmp_path, case, rows):
    ref = np.random.default_rng(0).normal(size=(rows, 4)).astype(np.float32)
    if case == "all zero logits":
        ref = np.zeros_like(ref)
    result = _odd_result(tmp_path, ODD[case](ref), ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        html = write_report(result, tmp_path / "r").read_text()
        from parity.summary import render

        markdown = render(result)
    assert not [f"{w.category.__name__}: {w.message}" for w in caught]
    assert "| odd | " in markdown
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["complete"] is True and "error distribution" not in html  # the plots are images, the page is whole
    assert html.count("data:image/png;base64,") >= 3 and "</html>" in html


def _logits_run(demo_artifacts, tmp_path, logits_file: Path):
    return subprocess.run([PY, "-m", "parity", "run", "--onnx", str(demo_artifacts.onnx), "--clips", str(demo_artifacts.val_list),
                           "--backends", "onnxruntime", "--reference", "onnxruntime", "--logits", f"device={logits_file}",
                           "--report", str(tmp_path / "r")], capture_output=True, text=True)


def _clip_names(val_list: Path) -> list[str]:
    return [Path(line.split()[0]).name for line in val_list.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["csv, one Inf logit", "npz, every logit Inf"])
def test_an_inf_logit_is_that_backends_named_failure_with_a_complete_report(demo_artifacts, tmp_path, form):
    names = _clip_names(demo_artifacts.val_list)
    classes = len([ln for ln in (demo_artifacts.val_list.parent / "labels.txt").read_text().splitlines() if ln.strip()])
    logits = np.random.default_rng(0).normal(size=(len(names), classes)).astype(np.float32)
    if form.startswith("csv"):
        path = tmp_path / "device.csv"
        rows = [[n, *(f"{v:.6f}" for v in row)] for n, row in zip(names, logits)]
        rows[0][2] = "inf"
        path.write_text("clip," + ",".join(f"c{i}" for i in range(classes)) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    else:
        path = tmp_path / "device.npz"
        np.savez(path, **{n: np.full(classes, np.inf, np.float32) for n in names})
    proc = _logits_run(demo_artifacts, tmp_path, path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]  # no numpy or matplotlib RuntimeWarning reaches the terminal
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["complete"] is True and (tmp_path / "r" / "index.html").is_file()
    (device,) = [c for c in data["comparisons"] if c["backend"] == "device"]
    assert not device["passed"] and any("outputs contain Inf" in r for r in device["reasons"])


# --- 2. --logits files that cannot be misread ----------------------------------------------------------------------

def _load(path: Path, text: str | bytes):
    from parity.backends.external import load_logits_file

    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return load_logits_file(path)


def _one_line_error(path: Path, text: str | bytes, *expected: str) -> str:
    with pytest.raises(HarnessError) as info:
        _load(path, text)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for part in expected:
        assert part in message, message
    return message


def test_a_clip_given_twice_in_a_csv_is_an_error_naming_both_lines(tmp_path):
    # before: the last row won silently
    _one_line_error(tmp_path / "dev.csv", "clip,c0,c1\na.mp4,1,2\nb.mp4,3,4\na.mp4,5,6\n", "line 4", "'a.mp4'", "first on line 2")


@pytest.mark.parametrize("text, line", [
    ("a.mp4,1,x\nb.mp4,1,2\n", "line 1"),            # a first line with numbers in it is a row, and a bad one
    ("a.mp4,1,2\nclip,c0,c1\n", "line 2"),           # a header after the first line is not a header
    ("# made on the device\n\nb.mp4,1,2\nclip,c0,c1\n", "line 4"),
])
def test_a_bad_line_is_an_error_naming_it_never_a_header(tmp_path, text, line):
    # before: an unparsable first line was silently taken for a header
    _one_line_error(tmp_path / "dev.csv", text, line, "not a number")


def test_the_header_rule_and_a_line_without_logits(tmp_path):
    assert set(_load(tmp_path / "h.csv", "\ufeffclip,c0,c1\r\n# comment\r\n\r\na.mp4,1,inf\r\n")) == {"a.mp4"}
    assert set(_load(tmp_path / "n.csv", "a.mp4,1,2\nb.mp4,3,4\n")) == {"a.mp4", "b.mp4"}  # no header
    _one_line_error(tmp_path / "e.csv", "a.mp4\nb.mp4,1,2\n", "line 1", "no logits")


def test_an_npy_or_an_unreadable_file_is_a_one_line_error(tmp_path):
    np.save(tmp_path / "dev.npy", np.zeros((3, 4), np.float32))
    from parity.backends.external import load_logits_file

    with pytest.raises(HarnessError) as info:  # before: UnicodeDecodeError
        load_logits_file(tmp_path / "dev.npy")
    assert ".npz keyed by clip" in str(info.value) and "CSV" in str(info.value) and str(tmp_path / "dev.npy") in str(info.value)
    _one_line_error(tmp_path / "bin.csv", b"\xff\xfe\x00\x01garbage", "neither a CSV")
    _one_line_error(tmp_path / "cut.npz", b"PK\x03\x04garbage", "not a readable .npz")


@pytest.mark.slow
def test_a_bad_logits_file_stops_the_run_with_one_line(demo_artifacts, tmp_path):
    names = _clip_names(demo_artifacts.val_list)
    path = tmp_path / "device.csv"
    path.write_text("".join(f"{n},1,2,3,4\n" for n in names) + f"{names[0]},4,3,2,1\n")
    proc = _logits_run(demo_artifacts, tmp_path, path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "given again" in ln]
    assert str(path) in line and f"line {len(names) + 1}" in line


# --- 3. a program's input and output are never one file -------------------------------------------------------------

def _items(tmp_path, n=2):
    from types import SimpleNamespace

    return [SimpleNamespace(clip=SimpleNamespace(path=tmp_path / f"clip{i}.mp4"), tensor=np.full((1, 2, 3, 4, 4), i, np.float32))
            for i in range(n)]


def _external(tmp_path, script: str):
    from parity.backends.external import ExternalRunner

    program = tmp_path / "prog.py"
    program.write_text(script)
    runner = ExternalRunner("mine", f"{PY} {program} {{tensor}} {{out}}", classes=4, timeout=60)
    runner.activate()
    try:
        return runner.infer_clips(_items(tmp_path)), runner.clip_errors
    finally:
        runner.deactivate()


def test_tensor_and_out_are_two_files(tmp_path):
    # before: both were work/<i>.npy, so the program overwrote its own input
    rows, errors = _external(tmp_path, "import os, sys, numpy as np\n"
                                       "src, out = sys.argv[1:3]\n"
                                       "if os.path.exists(out): sys.exit('the output is already there: ' + out)\n"
                                       "np.save(out, np.full(4, np.load(src).mean(), np.float32))\n")
    assert not errors and rows.tolist() == [[0.0] * 4, [1.0] * 4]


def test_a_program_that_writes_nothing_is_not_read_from_its_input(tmp_path):
    # before: the harness read the program's own input tensor back as its logits ("wrote 96 logits")
    rows, errors = _external(tmp_path, "import sys\n")
    assert np.isnan(rows).all() and all("wrote no logits" in e for e in errors.values()) and len(errors) == 2


@pytest.mark.parametrize("template, expected", [
    ("prog --io={tensor}:{out}", "one argument"),
    ("prog {video} {video}.{out}", "one argument"),
    ("prog {list} {out}", "per batch"),          # before: {out} reached the program as the text '{out}'
    ("prog {tensor} {out_dir}", "per batch"),
])
def test_templates_mixing_input_and_output_are_refused(template, expected):
    from parity.backends.external import parse_command

    with pytest.raises(HarnessError) as info:
        parse_command("mine", template)
    assert expected in str(info.value) and "\n" not in str(info.value) and "--external mine" in str(info.value)
    for fine in ("prog {tensor} {out}", "prog {video} -o {out}", "prog {tensor_list} {out_dir}", "prog --list={list} --out={out_dir}"):
        parse_command("mine", fine)


# --- 4. paddle-dygraph's model settings, from the checkpoint ---------------------------------------------------------

SMALL_V2 = dict(arch="pptsm_v2", num_classes=4, num_seg=4, size=64, scale=0.25, depths=[1, 1, 2, 1], class_expand=128)


def _save(tmp_path, spec: dict, form: str = "recognizer") -> Path:
    import paddle

    from parity.models import ModelSpec, build_model

    paddle.seed(0)
    model = build_model(ModelSpec(**spec))
    if form == "repped":
        model.rep()
    state = model.state_dict()
    if form in ("bare", "repped"):
        state = {k.split(".", 1)[1]: v for k, v in state.items()}
    elif form == "student":  # PaddleVideo DML: Student.0. on the bare keys, the teacher beside it
        state = {**{f"Student.0.{k.split('.', 1)[1]}": v for k, v in state.items()}, "Teacher.0.fc.weight": paddle.zeros([8, 3])}
    elif form == "extracted":
        state = {f"0.{k}": v for k, v in state.items()}
    path = tmp_path / f"{form}.pdparams"
    paddle.save(state, str(path))
    return path


@pytest.mark.parametrize("spec, form", [
    ({**SMALL_V2, "temporal_attention": False}, "recognizer"),
    ({**SMALL_V2, "temporal_attention": True}, "recognizer"),
    ({**SMALL_V2, "temporal_attention": True}, "student"),
    ({**SMALL_V2, "temporal_attention": False}, "extracted"),
    ({**SMALL_V2, "temporal_attention": False}, "repped"),
    ({**SMALL_V2, "scale": 0.5, "depths": [1, 2, 1, 2], "class_expand": 96, "num_seg": 8, "temporal_attention": True}, "bare"),
    ({**SMALL_V2, "scale": 0.3, "depths": [2, 1, 3, 1], "class_expand": 64, "num_classes": 7, "temporal_attention": False}, "recognizer"),
    (dict(arch="pptsm_r50", num_classes=4, num_seg=4, size=64), "recognizer"),
])
def test_the_model_is_read_from_the_checkpoint_and_loads_it(tmp_path, spec, form):
    from parity.checkpoint import load_checkpoint, spec_from_checkpoint
    from parity.models import ModelSpec, build_model

    path = _save(tmp_path, spec, form)
    got = spec_from_checkpoint(path)
    assert got["arch"] == spec["arch"] and got["num_classes"] == spec["num_classes"]
    if spec["arch"] == "pptsm_v2":
        assert {k: got[k] for k in ("depths", "class_expand", "temporal_attention")} == \
               {k: spec[k] for k in ("depths", "class_expand", "temporal_attention")}
        assert got["scale"] == pytest.approx(spec["scale"])
        assert got.get("num_seg") == (spec["num_seg"] if spec["temporal_attention"] else None)
    # what run.py does: the exported model's T and size, the checkpoint's own settings; strict load, no missing keys
    load_checkpoint(build_model(ModelSpec(**{"num_seg": spec["num_seg"], "size": spec["size"], **got})), path)


def test_the_default_model_is_paddlevideos_without_temporal_attention(tmp_path):
    # before: ModelSpec defaulted to LTA on, and a PaddleVideo checkpoint without it failed with
    # "missing: backbone.global_attention.fc.bias"
    from parity.checkpoint import load_checkpoint
    from parity.models import ModelSpec, build_model

    assert ModelSpec().temporal_attention is False
    path = _save(tmp_path, {**SMALL_V2, "temporal_attention": False})
    load_checkpoint(build_model(ModelSpec(**{k: v for k, v in SMALL_V2.items()})), path)


def test_a_checkpoint_of_another_model_is_one_line(tmp_path):
    import paddle

    from parity.checkpoint import CheckpointError, spec_from_checkpoint

    paddle.save({"encoder.layer.0.weight": paddle.zeros([2, 2])}, str(tmp_path / "other.pdparams"))
    with pytest.raises(CheckpointError) as info:
        spec_from_checkpoint(tmp_path / "other.pdparams")
    assert "neither a PP-TSMv2 nor a PP-TSM" in str(info.value) and str(tmp_path / "other.pdparams") in str(info.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        spec_from_checkpoint(tmp_path / "missing.pdparams")
