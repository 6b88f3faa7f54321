"""The gate on the real trained model: a clean conversion passes, injected defects fail."""
import dataclasses
import json

import pytest

from parity.report import write_report
from parity.run import run

pytestmark = pytest.mark.slow


def test_demo_model_really_learned(demo_artifacts):
    assert demo_artifacts.training["val_top1"] >= 0.9


def test_clean_conversion_passes(clean_run):
    assert clean_run.verdict == "pass"
    assert [(b.name, b.status) for b in clean_run.backends] == [("paddle", "ok"), ("onnxruntime", "ok"), ("onnxruntime-fp16", "ok")]
    by_name = {c.backend: c for c in clean_run.comparisons}
    fp32, fp16 = by_name["onnxruntime"], by_name["onnxruntime-fp16"]
    assert fp32.max_abs < 1e-4 and fp32.top1_agreement == 1.0
    assert fp16.max_abs > fp32.max_abs  # FP16 really ran in half precision
    assert fp16.top1_agreement >= 0.99
    assert fp32.reference_accuracy >= 0.9  # confident, labelled clips
    assert all(b.latency_ms for b in clean_run.backends)


@pytest.mark.parametrize("defect", ["conv_weight_x1.05", "dropped_dropout_scale", "wrong_normalization"])
def test_injected_defect_fails_the_gate(defect, defective_onnx, demo_run_config, parity_cache, tmp_path):
    cfg = dataclasses.replace(demo_run_config, onnx=str(defective_onnx(defect)), report=str(tmp_path))
    result = run(cfg, cache=parity_cache)
    assert result.verdict == "fail"
    failing = {c.backend for c in result.comparisons if not c.passed}
    assert "onnxruntime" in failing
    fp32 = next(c for c in result.comparisons if c.backend == "onnxruntime")
    assert fp32.failed_clips and fp32.reasons


def test_unloadable_onnx_is_that_backends_error(demo_run_config, parity_cache, tmp_path):
    """paddle2onnx's raw output (Squeeze of a non-1 axis) is not repaired by run: ORT's refusal is reported."""
    from parity.artifacts import PaddleModel, convert_to_onnx
    from parity.diagnose.lint import review
    from parity.errors import HarnessError

    raw = tmp_path / "raw.onnx"
    with pytest.raises(HarnessError):
        convert_to_onnx(PaddleModel.locate(demo_run_config.paddle_model), raw, repair=False, review=review)
    cfg = dataclasses.replace(demo_run_config, onnx=str(raw), report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    status = {b.name: (b.status, b.reason) for b in result.backends}
    assert status["paddle"][0] == "ok"
    assert status["onnxruntime"][0] == "error" and "Squeeze" in status["onnxruntime"][1]
    assert result.verdict == "fail"
    assert json.loads(json.dumps(result.to_dict()))["verdict"] == "fail"


def test_results_json_schema(clean_run, tmp_path):
    write_report(clean_run, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["verdict"] == "pass" and data["reference"] == "paddle" and data["schema_version"] == 3
    assert {"name", "status", "reason"} <= set(data["backends"][0])
    assert {"backend", "reference", "passed", "max_abs", "top1_agreement"} <= set(data["comparisons"][0])
    assert {"path", "label", "status", "error"} <= set(data["clips"][0])
    for key in ("paddle_model", "onnx", "clips"):
        assert data["artifacts"][key]
    assert (tmp_path / "index.html").is_file() and (tmp_path / "logits.npz").is_file() and (tmp_path / "clips.csv").is_file()
