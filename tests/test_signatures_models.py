"""The tiny per-signature models: each exports with a None batch dimension, converts, and gives the same answers in
Paddle dygraph, Paddle Inference, ONNX Runtime and OpenVINO on the same random inputs (FP32: atol 1e-4)."""
import numpy as np
import onnx
import paddle
import pytest

from parity.backends import BACKENDS, ModelArtifacts
from parity.backends.paddle_inference import fast_cpu_mode
from parity.models.signatures import SIGNATURES, build
from parity.optional import lazy, missing

ov = lazy("openvino")

ATOL = 1e-4
CLIPS = 2  # more than one clip: the batch dimension is free, and the rows per clip are counted


def _run(runner, feed: dict) -> np.ndarray:
    with runner:
        (out,) = runner.infer(feed, check_inputs=False).values()  # as the engines call it
    return np.asarray(out)


def test_every_signature_is_built(signature_models):
    assert set(signature_models) == {"ntchw_views", "ntchw_views_in_n", "ncthw", "slowfast"}
    assert signature_models["slowfast"].inputs == ("slow_input", "fast_input")  # export_model.py's names and order
    assert signature_models["ncthw"].layouts == ("ncthw",) and signature_models["ntchw_views"].layouts == ("ntchw",)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_exported_and_converted_inputs_match_the_signature(signature_models, name):
    model = signature_models[name]
    sig = model.signature
    declared = dict(model.paddle.inputs())
    assert set(declared) == set(sig.inputs)
    for input_name, shape in zip(sig.inputs, sig.shapes):
        assert declared[input_name][0] == -1 and declared[input_name][1:] == list(shape[1:])  # None batch, as PaddleVideo exports
    graph = onnx.load(str(model.onnx)).graph
    assert [i.name for i in graph.input] == list(sig.inputs)  # ONNX keeps the model's order
    for value, shape in zip(graph.input, sig.shapes):
        dims = value.type.tensor_type.shape.dim
        assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == list(shape[1:])
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [sig.num_classes]
    assert model.onnx.with_suffix(".conversion.json").is_file()


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_paddle_onnxruntime_and_openvino_agree(signature_models, parity_cache, name):
    model = signature_models[name]
    sig = model.signature
    feed = model.feed(clips=CLIPS, seed=7)
    art = ModelArtifacts(paddle_model=model.paddle, onnx=model.onnx, cache=parity_cache, threads=1, classes=sig.num_classes)

    paddle_out = _run(BACKENDS["paddle"].make_runner(art), feed)
    ort_out = _run(BACKENDS["onnxruntime"].make_runner(art), feed)
    with paddle.no_grad():
        dygraph = build(sig)(*[paddle.to_tensor(a) for a in feed.values()]).numpy()

    assert paddle_out.shape == (CLIPS * sig.rows_per_clip, sig.num_classes)
    np.testing.assert_allclose(paddle_out, dygraph, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ort_out, paddle_out, rtol=0, atol=ATOL)
    if sig.output == "probabilities":
        np.testing.assert_allclose(paddle_out.sum(axis=1), 1.0, atol=1e-5)
    else:  # logits well spread: the rows differ by far more than the tolerance
        assert np.ptp(paddle_out, axis=1).min() > 1.0

    if missing("openvino") is None:
        compiled = ov.Core().compile_model(str(model.onnx), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
        (ov_out,) = compiled(feed).values()
        np.testing.assert_allclose(ov_out, paddle_out, rtol=0, atol=ATOL)


def test_views_folded_into_n_give_one_row_per_view(signature_models):
    """A clip's views fed as N entries come back as that many rows; the other signatures fold views inside the graph."""
    model = signature_models["ntchw_views_in_n"]
    feed = model.feed(clips=1, seed=3)
    assert next(iter(feed.values())).shape[0] == model.signature.views == model.rows_per_clip
    rows = _run(BACKENDS["onnxruntime"].make_runner(ModelArtifacts(onnx=model.onnx, threads=1)), feed)
    assert rows.shape == (model.rows_per_clip, model.num_classes)
    assert not np.allclose(rows[0], rows[1])  # each view is its own row


def test_paddle_cpu_mode_probe_runs_a_two_input_model(signature_models, parity_cache):
    assert fast_cpu_mode(signature_models["slowfast"].paddle, parity_cache) != "native"
