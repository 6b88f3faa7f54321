"""Export, conversion and caching, on the real trained demo model."""
import json
import sys

import numpy as np
import onnx
import pytest

from parity import artifacts
from parity.artifacts import ArtifactCache, PaddleModel, convert_to_onnx, ort_load_error
from parity.demo import load_trained
from parity.diagnose.lint import review

pytestmark = pytest.mark.slow


def test_cache_builds_once_per_key(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def make(d):
        calls.append(d)
        (d / "out.txt").write_text("x")

    a = cache.get_or_build("stage", {"k": 1}, make)
    b = cache.get_or_build("stage", {"k": 1}, make)
    c = cache.get_or_build("stage", {"k": 2}, make)
    assert a == b != c and len(calls) == 2 and (a / "out.txt").read_text() == "x"


def test_failed_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path)
    with pytest.raises(RuntimeError):
        cache.get_or_build("stage", {"k": 1}, lambda d: (_ for _ in ()).throw(RuntimeError("boom")))
    assert not any((tmp_path / "stage").iterdir())


def test_export_is_paddlevideo_shaped(demo_artifacts):
    pm = demo_artifacts.paddle_model
    assert pm.model_file.suffix in (".json", ".pdmodel") and pm.params_file.is_file()
    m = onnx.load(str(demo_artifacts.onnx))
    (inp,) = m.graph.input
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "data_batch_0"
    spec = demo_artifacts.training["model"]
    assert dims[1:] == [spec["num_seg"], 3, spec["size"], spec["size"]] and isinstance(dims[0], str)


def test_full_size_default_builds_exports_and_converts(tmp_path):
    """PP-TSMv2 at its defaults (16 segments, 224, LTA on, 101 classes) exports and converts."""
    import paddle

    from parity.artifacts.model_files import model_input
    from parity.backends import ModelArtifacts
    from parity.models import ModelSpec, build_model

    spec = ModelSpec(num_classes=101, num_seg=16, size=224, temporal_attention=True)
    model = build_model(spec)
    pm = artifacts.export_inference_model(model, spec.num_seg, spec.size, tmp_path / "full")
    record = convert_to_onnx(pm, tmp_path / "full.onnx", review=review)
    assert record.repairs  # LTA's squeeze
    assert model_input(ModelArtifacts(onnx=tmp_path / "full.onnx")) == ("data_batch_0", 16, 224)
    assert model_input(ModelArtifacts(paddle_model=pm)) == ("data_batch_0", 16, 224)
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(1, 16, 3, 224, 224)).astype("float32")
    with paddle.no_grad():
        expected = model(paddle.to_tensor(x)).numpy()
    got = ort.InferenceSession(str(tmp_path / "full.onnx")).run(None, {"data_batch_0": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_exported_model_matches_dygraph(demo_artifacts):
    import paddle
    from paddle import inference

    model, spec = load_trained(demo_artifacts.trained)
    x = np.random.default_rng(0).normal(size=(2, spec.num_seg, 3, spec.size, spec.size)).astype("float32")
    with paddle.no_grad():
        expected = model(paddle.to_tensor(x)).numpy()
    cfg = inference.Config(str(demo_artifacts.paddle_model.model_file), str(demo_artifacts.paddle_model.params_file))
    cfg.disable_gpu()
    pred = inference.create_predictor(cfg)
    h = pred.get_input_handle(pred.get_input_names()[0])
    h.reshape(list(x.shape))
    h.copy_from_cpu(x)
    pred.run()
    got = pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_conversion_repairs_the_lta_squeeze_and_records_it(demo_artifacts, tmp_path):
    record = json.loads(demo_artifacts.onnx.with_suffix(".conversion.json").read_text())
    assert len(record["repairs"]) == 1 and "Squeeze" in record["repairs"][0]
    assert record["checker"] == "passed" and record["ort_session"] == "opened"
    assert ort_load_error(demo_artifacts.onnx) is None


def test_unrepaired_conversion_is_refused_by_onnxruntime(demo_artifacts, tmp_path):
    from parity.errors import HarnessError

    with pytest.raises(HarnessError, match="ONNX Runtime refuses"):
        convert_to_onnx(demo_artifacts.paddle_model, tmp_path / "raw.onnx", repair=False, review=review)
    assert "Squeeze" in ort_load_error(tmp_path / "raw.onnx")


def test_an_interrupted_conversion_leaves_the_earlier_model_and_nothing_else(demo_artifacts, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the earlier, reviewed model")

    def interrupted_review(paddle_model, model, repair):  # a Ctrl-C while paddle2onnx's output is reviewed
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_to_onnx(demo_artifacts.paddle_model, out, review=interrupted_review)
    assert out.read_bytes() == b"the earlier, reviewed model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no partial file beside it


def test_model_without_lta_converts_without_repair(tmp_path):
    from parity.models import ModelSpec, build_model

    spec = ModelSpec(num_classes=3, num_seg=4, size=64, scale=0.25, depths=[1, 1, 1, 1], class_expand=32, temporal_attention=False)
    pm = artifacts.export_inference_model(build_model(spec), 4, 64, tmp_path / "m")
    record = convert_to_onnx(pm, tmp_path / "m.onnx", review=review)
    assert record.repairs == [] and record.lint == []
    from parity.diagnose.localize import localize

    x = np.random.default_rng(0).normal(size=(1, 4, 3, 64, 64)).astype(np.float32)
    assert localize(pm, tmp_path / "m.onnx", x).first_divergence is None


def test_fp16_model_keeps_float32_io(demo_artifacts, tmp_path):
    out = artifacts.convert_to_fp16(demo_artifacts.onnx, tmp_path / "m16.onnx")
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = list(m.graph.initializer) + [n.attribute[0].t for n in m.graph.node if n.op_type == "Constant"]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 and len(t.dims) == 4 for t in weights)


def test_locate_accepts_prefix_file_and_folder(demo_artifacts):
    pm = demo_artifacts.paddle_model
    assert PaddleModel.locate(pm.prefix) == pm
    assert PaddleModel.locate(pm.model_file) == pm
    assert PaddleModel.locate(pm.model_file.parent) == pm


def test_locate_missing_model_is_a_harness_error(tmp_path):
    from parity.errors import HarnessError

    with pytest.raises(HarnessError, match="no Paddle inference model"):
        PaddleModel.locate(tmp_path / "nothing")


def test_conversion_never_installs_packages_at_run_time(demo_artifacts, tmp_path, monkeypatch):
    """paddle2onnx 2.x turns on Polygraphy's auto-install; a module its folding misses must not become a pip install."""
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "onnx_graphsurgeon.py").write_text("raise ImportError('blocked for the test')\n")
    marker = tmp_path / "pip-was-called"
    fake_pip = tmp_path / "fake_pip.py"
    fake_pip.write_text(f"import sys\nopen({str(marker)!r}, 'w').write(' '.join(sys.argv))\nsys.exit(1)\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker))
    monkeypatch.setenv("POLYGRAPHY_INSTALL_CMD", f"{sys.executable} {fake_pip}")
    record = convert_to_onnx(demo_artifacts.paddle_model, tmp_path / "m.onnx", review=review)
    assert record.ort_session == "opened"
    assert not marker.exists()
