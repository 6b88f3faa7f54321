"""Exported models from both Paddle majors, and the C++ preprocessing variant, through `parity run`."""
import json

import pytest

from parity.cli import main

pytestmark = pytest.mark.slow


def test_paddle26_export_is_a_legacy_program(legacy_pdmodel):
    assert legacy_pdmodel.model_file.suffix == ".pdmodel"
    spec = legacy_pdmodel.inputs()
    assert spec[0][0] == "data_batch_0" and spec[0][1][1:3] == [8, 3]


@pytest.mark.parametrize("fmt", ["pdmodel", "json"])
def test_run_reads_T_and_size_from_the_model(fmt, legacy_pdmodel, demo_artifacts, tmp_path, capsys):
    model = legacy_pdmodel.model_file if fmt == "pdmodel" else demo_artifacts.paddle_model.model_file
    onnx = tmp_path / "m.onnx"
    assert main(["convert", "--paddle-model", str(model), "--out", str(onnx)]) == 0
    code = main(["run", "--paddle-model", str(model), "--onnx", str(onnx), "--clips", str(demo_artifacts.val_list),
                 "--backends", "paddle,onnxruntime", "--report", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr()
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    size = json.loads((demo_artifacts.trained / "model_spec.json").read_text())["size"]
    assert data["preprocess"]["num_seg"] == 8 and data["preprocess"]["target_size"] == size
    # a flag that contradicts the model is an error
    assert main(["run", "--paddle-model", str(model), "--clips", str(demo_artifacts.val_list), "--backends", "paddle",
                 "--target-size", "224", "--report", str(tmp_path / "r2")]) == 2


def test_cpp_preprocessing_run_says_so(demo_artifacts, tmp_path):
    code = main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
                 "--clips", str(demo_artifacts.val_list), "--preprocess", "cpp", "--backends", "paddle,onnxruntime",
                 "--report", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["preprocess"]["variant"] == "cpp"
    assert "Preprocessing: <code>cpp</code>" in (tmp_path / "index.html").read_text()


def test_lint_and_localize_read_legacy_programs(legacy_pdmodel, demo_artifacts, tmp_path):
    """A Paddle 2.6 .pdmodel is matched op by op too (paddle2onnx translates it to PIR; so does the lint)."""
    import onnx

    from fixtures.defects import scale_conv_weight
    from parity.artifacts import convert_to_onnx
    from parity.diagnose.lint import lint, lint_model, review
    from parity.diagnose.localize import localize
    from parity.diagnose.program import read_program
    from parity.preprocess import PreprocessConfig, load_clip_tensor

    converted = tmp_path / "legacy.onnx"
    convert_to_onnx(legacy_pdmodel, converted, review=review)
    assert lint(legacy_pdmodel, converted) == []
    model = onnx.load(str(converted))
    bn = [n for n in model.graph.node if n.op_type == "BatchNormalization"][2]
    next(a for a in bn.attribute if a.name == "epsilon").f = 0.3
    (finding,) = lint_model(read_program(legacy_pdmodel), model)
    assert finding.onnx_node == bn.name and "batch_norm #2" in finding.paddle_op
    clip = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    x = load_clip_tensor(clip, PreprocessConfig.for_size(8, json.loads((demo_artifacts.trained / "model_spec.json").read_text())["size"]))
    assert localize(legacy_pdmodel, converted, x).first_divergence is None
    weight = scale_conv_weight(converted, tmp_path / "bad.onnx", 1.05, 3)
    first = localize(legacy_pdmodel, tmp_path / "bad.onnx", x).first_divergence
    assert first.onnx_op == "Conv" and weight in first.paddle_op
