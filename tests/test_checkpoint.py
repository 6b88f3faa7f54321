"""PaddleVideo checkpoints in every key form and rep state, into both architectures."""
import numpy as np
import paddle
import pytest

from parity.artifacts import PaddleModel, export_inference_model
from parity.checkpoint import CheckpointError, load_checkpoint, load_state
from parity.models import ModelSpec, build_model

V2 = ModelSpec(arch="pptsm_v2", num_classes=5, num_seg=8, size=64, scale=0.25, depths=[1, 1, 2, 2], class_expand=64)
R50 = ModelSpec(arch="pptsm_r50", num_classes=5, num_seg=4, size=64)


def _trained_like(spec, seed=0):
    """A model whose every parameter and BN statistic is non-trivial, as after training."""
    paddle.seed(seed)
    model = build_model(spec)
    rng = np.random.default_rng(seed)
    state = {}
    for k, v in model.state_dict().items():
        arr = v.numpy()
        if k.endswith("_variance"):
            arr = rng.uniform(0.5, 1.5, arr.shape)
        elif k.endswith(("_mean", "bias")) or ("_batch_norm" in k or ".bn." in k):
            arr = arr + rng.normal(0, 0.1, arr.shape)
        state[k] = arr.astype("float32")
    model.set_state_dict(state)
    model.eval()
    return model


def _forms(state: dict, arch: str) -> dict:
    bare = {k.split(".", 1)[1]: v for k, v in state.items()}
    return {
        "bare": bare,
        "recognizer": dict(state),
        "dml": {**{f"Student.0.{k}": v for k, v in state.items()}, **{f"Teacher.0.{k}": v for k, v in state.items()}},
        "student_extracted": {f"0.{k}": v for k, v in state.items()},
    }


def _logits(model, spec, seed=1):
    x = np.random.default_rng(seed).normal(size=(2, spec.num_seg, 3, spec.size, spec.size)).astype("float32")
    with paddle.no_grad():
        return x, model(paddle.to_tensor(x)).numpy()


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("spec", [V2, R50], ids=["pptsm_v2", "pptsm_r50"])
@pytest.mark.parametrize("form", ["bare", "recognizer", "dml", "student_extracted"])
def test_every_prefix_form_loads(spec, form):
    source = _trained_like(spec)
    x, expected = _logits(source, spec)
    model = build_model(spec)
    load_state(model, _forms(_state(source), spec.arch)[form])
    model.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), expected, atol=1e-5)


def test_repped_checkpoint_loads_and_reps_the_model():
    source = _trained_like(V2)
    x, expected = _logits(source, V2)
    source.rep()
    repped = {k: v for k, v in _state(source).items() if ".dw_conv_list." not in k}
    model = build_model(V2)
    load_state(model, _forms(repped, "pptsm_v2")["dml"])
    model.eval()
    assert model.backbone.stages[2][0].is_repped
    with paddle.no_grad():
        np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), expected, atol=1e-4)


def test_training_form_without_fused_tensors_loads():
    source = _trained_like(V2)
    fused = (".dw_conv.weight", ".dw_conv.bias")
    x, expected = _logits(source, V2)
    state = {k: v for k, v in _state(source).items() if not (k.endswith(fused) and ("stages.2" in k or "stages.3" in k))}
    model = build_model(V2)
    load_state(model, state)
    model.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("spec", [V2, R50], ids=["pptsm_v2", "pptsm_r50"])
def test_wrong_class_count_names_the_keys(spec):
    source = _state(_trained_like(spec))
    other = build_model(ModelSpec(**{**spec.to_dict(), "num_classes": 7}))
    with pytest.raises(CheckpointError) as err:
        load_state(other, source, "ckpt.pdparams")
    msg = str(err.value)
    assert "ckpt.pdparams" in msg and "mis-shaped" in msg and "fc.weight" in msg and "\n" not in msg


def test_missing_layer_names_the_keys():
    state = _state(_trained_like(V2))
    del state["backbone.last_conv.weight"]
    state["backbone.extra.weight"] = np.zeros(3, "float32")
    with pytest.raises(CheckpointError, match=r"missing: backbone\.last_conv\.weight.*unexpected: backbone\.extra\.weight"):
        load_state(build_model(V2), state)


def test_unreadable_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "x.pdparams"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="not a readable .pdparams"):
        load_checkpoint(build_model(V2), bad)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(build_model(V2), tmp_path / "none.pdparams")


def _predict_exported(pm: PaddleModel, x: np.ndarray) -> np.ndarray:
    from parity.backends.paddle_inference import PaddleInferenceRunner

    with PaddleInferenceRunner(pm) as runner:
        (out,) = runner.infer({"data_batch_0": x}, check_inputs=False).values()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("spec, repped", [(V2, False), (V2, True), (R50, False)], ids=["v2-training-form", "v2-repped", "r50"])
def test_export_matches_dygraph(spec, repped, tmp_path):
    source = _trained_like(spec)
    x, expected = _logits(source, spec)
    state = _state(source)
    if repped:
        source.rep()
        state = {k: v for k, v in _state(source).items() if ".dw_conv_list." not in k}
    paddle.save(_forms(state, spec.arch)["dml"], str(tmp_path / "ckpt.pdparams"))
    model = build_model(spec)
    load_checkpoint(model, tmp_path / "ckpt.pdparams")
    pm = export_inference_model(model, spec.num_seg, spec.size, tmp_path / "exported")
    assert pm.inputs() == [("data_batch_0", [-1, spec.num_seg, 3, spec.size, spec.size])]
    np.testing.assert_allclose(_predict_exported(pm, x), expected, atol=1e-4)


@pytest.mark.slow
def test_export_command(tmp_path, capsys):
    from parity.cli import main

    spec = ModelSpec(arch="pptsm_v2", num_classes=5, num_seg=16, size=64, scale=0.25, depths=[1, 1, 2, 2], class_expand=64, temporal_attention=True)
    source = _trained_like(spec)
    x, expected = _logits(source, spec)
    paddle.save({f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}, str(tmp_path / "best.pdparams"))
    code = main([
        "export", "--arch", "pptsm_v2", "--weights", str(tmp_path / "best.pdparams"), "--num-classes", "5", "--num-seg", "16",
        "--temporal-attention", "--size", "64", "--scale", "0.25", "--depths", "1,1,2,2", "--class-expand", "64",
        "--out", str(tmp_path / "out" / "ppTSMv2"),
    ])
    assert code == 0 and "data_batch_0 [None, 16, 3, 64, 64]" in capsys.readouterr().out
    np.testing.assert_allclose(_predict_exported(PaddleModel.locate(tmp_path / "out" / "ppTSMv2"), x), expected, atol=1e-4)
    # a checkpoint for another class count fails with the keys named, and exit code 2
    assert main(["export", "--weights", str(tmp_path / "best.pdparams"), "--num-classes", "9", "--num-seg", "16",
                 "--temporal-attention", "--size", "64", "--scale", "0.25", "--depths", "1,1,2,2", "--class-expand", "64",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "fc.weight" in capsys.readouterr().err
