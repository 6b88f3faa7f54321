"""Where parity broke: the lint of real converted models, edited one attribute at a time, and the
first diverging node in Paddle's own names."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from parity.artifacts import convert_to_onnx
from parity.cli import main
from parity.diagnose.lint import LEAKY_RELU_RULE, lint, lint_model, repair, review
from parity.diagnose.localize import FP32_TOLERANCE, localize
from parity.diagnose.program import read_program

pytestmark = pytest.mark.slow


def _paddle_logits(model, x):
    from paddle import inference

    from parity.backends.paddle_inference import make_config

    predictor = inference.create_predictor(make_config(model, 1, "native"))
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def _ort_logits(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _input(t, size, seed=0):
    return np.random.default_rng(seed).normal(size=(1, t, 3, size, size)).astype(np.float32)


def _edit(path, op_type, index, name, value):
    model = onnx.load(str(path))
    node = [n for n in model.graph.node if n.op_type == op_type][index]
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute(name, value))
    return model, node.name


def _lint_edit_repair(paddle_model, onnx_path, op_type, index, name, value, rule, t, size):
    """Edit one attribute; lint names the node and its Paddle op; the repair makes the numbers pass again."""
    ops = read_program(paddle_model)
    model, node = _edit(onnx_path, op_type, index, name, value)
    findings = lint_model(ops, model)
    (finding,) = [f for f in findings if f.rule != "onnx-strict-shape-inference"]
    assert finding.rule == rule and finding.onnx_node == node and finding.onnx_op == op_type and finding.attribute == name
    assert finding.paddle_op and finding.repairable and node in finding.message
    assert len(repair(model, findings)) == 1
    assert lint_model(ops, model) == []
    x = _input(t, size)
    ref = _paddle_logits(paddle_model, x)
    np.testing.assert_allclose(_ort_logits(model, x), ref, rtol=1e-3, atol=1e-4)
    return finding


def test_clean_demo_models_lint_clean(demo_artifacts, tmp_path):
    assert lint(demo_artifacts.paddle_model, demo_artifacts.onnx) == []
    assert json.loads(demo_artifacts.onnx.with_suffix(".conversion.json").read_text())["lint"] == []


def test_batch_norm_epsilon(demo_artifacts):
    f = _lint_edit_repair(demo_artifacts.paddle_model, demo_artifacts.onnx, "BatchNormalization", 3, "epsilon", 0.5,
                          "normalization-epsilon", 8, 112)
    assert "batch_norm #3" in f.paddle_op and f.paddle_value == pytest.approx(1e-5)


def test_pooling_kernel(small_pptsm_r50, small_pptsm_r50_onnx):
    f = _lint_edit_repair(small_pptsm_r50[0], small_pptsm_r50_onnx[1], "MaxPool", 0, "kernel_shape", [5, 5], "pooling-geometry", 4, 64)
    assert "pool2d" in f.paddle_op and f.paddle_value == [3, 3] and f.onnx_value == [5, 5]


def test_activation_constant(small_pptsm_r50, small_pptsm_r50_onnx):
    f = _lint_edit_repair(small_pptsm_r50[0], small_pptsm_r50_onnx[1], "LeakyRelu", 7, "alpha", 0.2, LEAKY_RELU_RULE, 4, 64)
    assert "leaky_relu #7" in f.paddle_op and f.paddle_value == pytest.approx(0.01)


def test_softmax_axis(softmax_model):
    f = _lint_edit_repair(*softmax_model, "Softmax", 0, "axis", 0, "softmax-axis", 4, 64)
    assert "softmax" in f.paddle_op


def test_paddle2onnx_loses_leaky_relu_alphas_and_convert_repairs_them(small_pptsm_r50, small_pptsm_r50_onnx, tmp_path):
    """A real converter defect this lint found: paddle2onnx 2.1 writes PP-TSM v1's LeakyRelu alphas from uninitialized memory."""
    paddle_model = small_pptsm_r50[0]
    raw = convert_to_onnx(paddle_model, tmp_path / "raw.onnx", repair=False, review=review)
    lost = [f for f in raw.lint if f["rule"] == LEAKY_RELU_RULE]
    x = _input(4, 64)
    ref = _paddle_logits(paddle_model, x)
    if lost:  # paddle2onnx still has the defect: the raw model is wrong (far off, or NaN: the alphas are whatever the
        # memory held), the repaired one is right
        assert not np.abs(_ort_logits(onnx.load(str(tmp_path / "raw.onnx")), x) - ref).max() <= 1.0
    record, repaired = small_pptsm_r50_onnx
    assert record.lint == [] and len([r for r in record.repairs if "LeakyRelu" in r]) == len(lost)
    np.testing.assert_allclose(_ort_logits(onnx.load(str(repaired)), x), ref, rtol=1e-3, atol=1e-4)


def test_lint_command_exit_codes_and_repair(demo_artifacts, tmp_path, capsys):
    assert main(["lint", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx)]) == 0
    model, node = _edit(demo_artifacts.onnx, "BatchNormalization", 0, "epsilon", 0.5)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    capsys.readouterr()
    args = ["lint", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(bad)]
    assert main([*args, "--json", "--repair", str(tmp_path / "fixed.onnx")]) == 1
    (finding,) = json.loads(capsys.readouterr().out)
    assert set(finding) >= {"rule", "onnx_node", "onnx_op", "paddle_op", "attribute", "paddle_value", "onnx_value", "message"}
    assert finding["onnx_node"] == node
    assert main(["lint", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(tmp_path / "fixed.onnx")]) == 0
    assert main(["lint", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(tmp_path / "nope.onnx")]) == 2


def test_the_lta_squeeze_is_a_named_rule(demo_artifacts, tmp_path):
    from parity.diagnose.lint import SQUEEZE_RULE
    from parity.errors import HarnessError

    record = None
    with pytest.raises(HarnessError, match="ONNX Runtime refuses"):
        record = convert_to_onnx(demo_artifacts.paddle_model, tmp_path / "raw.onnx", repair=False, review=review)
    assert record is None
    findings = lint(demo_artifacts.paddle_model, tmp_path / "raw.onnx")
    assert SQUEEZE_RULE in {f.rule for f in findings} and "onnxruntime-load" in {f.rule for f in findings}
    squeeze = next(f for f in findings if f.rule == SQUEEZE_RULE)
    assert "squeeze" in squeeze.paddle_op and squeeze.onnx_op == "Squeeze"


def test_run_lint_error_fails_the_verdict_and_warn_reports(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    from parity.run import run

    model, _ = _edit(demo_artifacts.onnx, "BatchNormalization", 0, "epsilon", 1.1e-5)  # numerically harmless, still wrong
    onnx.save(model, str(tmp_path / "eps.onnx"))
    cfg = dataclasses.replace(demo_run_config, onnx=str(tmp_path / "eps.onnx"), backends=["paddle", "onnxruntime"], report=str(tmp_path / "r"))
    failed = run(cfg, cache=parity_cache)
    assert failed.verdict == "fail" and all(c.passed for c in failed.comparisons) and len(failed.lint) == 1
    assert [f.text.split(" (")[0] for f in failed.failures] == ["lint: 1 finding(s) in the ONNX model against the Paddle program"]
    warned = run(dataclasses.replace(cfg, lint="warn"), cache=parity_cache)
    assert warned.verdict == "pass" and len(warned.lint) == 1 and any(n.startswith("lint: 1 finding") for n in warned.notes)


# ----------------------------------------------------------------------------- localize


def _clip_tensor(demo_artifacts):
    from parity.preprocess import PreprocessConfig, load_clip_tensor

    clip = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    return load_clip_tensor(clip, PreprocessConfig.for_size(8, 112))


def test_clean_model_localizes_nothing(demo_artifacts):
    d = localize(demo_artifacts.paddle_model, demo_artifacts.onnx, _clip_tensor(demo_artifacts))
    assert d.first_divergence is None and len(d.curve) > 50 and max(p["error"] for p in d.curve) < FP32_TOLERANCE


@pytest.mark.parametrize("index", [0, 3, 9])
def test_a_perturbed_conv_is_the_first_divergence(demo_artifacts, tmp_path, index):
    from fixtures.defects import scale_conv_weight

    bad = tmp_path / "bad.onnx"
    weight = scale_conv_weight(demo_artifacts.onnx, bad, 1.05, index)
    conv = [n for n in onnx.load(str(bad)).graph.node if n.op_type == "Conv"][index]
    d = localize(demo_artifacts.paddle_model, bad, _clip_tensor(demo_artifacts))
    first = d.first_divergence
    assert first.onnx_node == conv.name and first.onnx_op == "Conv" and weight in first.paddle_op and "conv2d" in first.paddle_op
    assert first.error_out > FP32_TOLERANCE >= first.error_in
    before = [p for p in d.curve if p["depth"] < next(p["depth"] for p in d.curve if p["tensor"] == first.tensor)]
    assert all(p["error"] <= FP32_TOLERANCE for p in before)  # no earlier node


def test_localize_command(demo_artifacts, tmp_path, capsys):
    from fixtures.defects import scale_conv_weight

    bad = tmp_path / "bad.onnx"
    scale_conv_weight(demo_artifacts.onnx, bad, 1.05, 3)
    args = ["localize", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--clips", str(demo_artifacts.val_list)]
    assert main([*args, "--onnx", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["first_divergence"]["onnx_op"] == "Conv" and data["mode"] == "first-divergence"
    assert main([*args, "--onnx", str(demo_artifacts.onnx)]) == 0
    assert "no divergence" in capsys.readouterr().out


def test_localize_command_and_run_localize_pick_the_same_clip(demo_artifacts, demo_run_config, parity_cache, tmp_path, capsys):
    """One ranking of the worst clip (compare.badness): `parity localize` and `run --localize` explain the same clip."""
    from fixtures.defects import scale_conv_weight
    from parity.run import run

    bad = tmp_path / "bad.onnx"
    scale_conv_weight(demo_artifacts.onnx, bad, 1.05, 3)
    assert main(["localize", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--clips", str(demo_artifacts.val_list),
                 "--onnx", str(bad), "--json"]) == 1
    picked = json.loads(capsys.readouterr().out)["clip"]
    cfg = dataclasses.replace(demo_run_config, onnx=str(bad), backends=["paddle", "onnxruntime"], localize=True, report=str(tmp_path / "r"))
    (diagnosis,) = run(cfg, cache=parity_cache).diagnosis
    assert diagnosis["clip"] == picked


def test_run_localize_writes_diagnosis_and_the_report_shows_it(demo_artifacts, demo_run_config, parity_cache, tmp_path):
    from fixtures.defects import scale_conv_weight
    from parity.report import write_report
    from parity.run import run

    bad = tmp_path / "bad.onnx"
    scale_conv_weight(demo_artifacts.onnx, bad, 1.05, 3)
    cfg = dataclasses.replace(demo_run_config, onnx=str(bad), localize=True, report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    html = write_report(result, cfg.report)
    by_backend = {d["backend"]: d for d in json.loads((tmp_path / "r" / "results.json").read_text())["diagnosis"]}
    assert by_backend["onnxruntime"]["first_divergence"]["onnx_op"] == "Conv"
    assert by_backend["onnxruntime-fp16"]["mode"] == "largest-jump"
    text = Path(html).read_text()
    assert 'id="where"' in text and "First divergence" in text and 'alt="error against depth for onnxruntime"' in text
