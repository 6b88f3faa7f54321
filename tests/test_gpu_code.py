"""The GPU backends' code, checked here without a GPU: Polygraphy's real loaders over faked TensorRT modules
with exactly the attributes each TensorRT major has, Paddle-TRT's refusals, and the TRT EP's fallback guard."""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.fake_tensorrt import fake_trt, forget_fake_tensorrt  # noqa: F401  (an autouse fixture)
from parity.backends import BACKENDS, ModelArtifacts
from parity.backends.gpu import backend_environment, gate_arguments, ort_trt_providers, paddle_gpu_plan, trt_share_problem
from parity.backends.tensorrt import EngineSpec, build_plan, fp16_path, profile_shapes


def _spec(precision, path=""):
    mn, opt, mx = profile_shapes(8, 112, 1)
    return EngineSpec("a" * 64, "10.0.0", "NVIDIA L4", precision, "data_batch_0", mn, opt, mx, fp16_path=path)


@pytest.mark.parametrize("major", [10, 11])
def test_the_engine_loader_chain_runs_on_polygraphys_real_loaders(major, tmp_path, monkeypatch):
    """`BytesFromPath(lambda: ...)` would fail here with a TypeError before any engine exists (it opens its argument)."""
    import json

    from parity.backends.tensorrt import trt_runner

    fake = fake_trt(major)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr("parity.backends.gpu.gpu_names", lambda: ("NVIDIA L4",))
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized-engine")
    spec = dataclasses.replace(_spec("fp16", fp16_path(fake)), tensorrt_version=fake.__version__)
    engine.with_name("model.engine.json").write_text(json.dumps(spec.to_dict()))
    runner = trt_runner(ModelArtifacts(trt_engine=engine), "fp16", "tensorrt-fp16")
    built = runner._engine_or_context()  # Polygraphy's EngineFromBytes, called as the runner's activation calls it
    assert built.serialized == b"serialized-engine"


def test_tensorrt_10_and_11_take_different_fp16_paths():
    trt10, trt11 = fake_trt(10), fake_trt(11)
    assert fp16_path(trt10) == "builder-flag" and fp16_path(trt11) == "strongly-typed"
    assert build_plan(_spec("fp16", "builder-flag"), trt10) == {"onnx": "fp32", "strongly_typed": False, "fp16": True, "tf32": None}
    # TensorRT 11: no BuilderFlag.FP16, so no fp16=True for Polygraphy's CreateConfig; the FP16 ONNX model, strongly typed
    assert build_plan(_spec("fp16", "strongly-typed"), trt11) == {"onnx": "fp16", "strongly_typed": True, "fp16": None, "tf32": None}
    for trt in (trt10, trt11):
        assert build_plan(_spec("fp32"), trt)["tf32"] is False  # TF32 off where the flag exists


def test_tensorrt_int8_calibrates_on_10_and_takes_the_qdq_model_on_11(monkeypatch):
    from parity.backends.tensorrt import create_config, int8_path

    trt10, trt11 = fake_trt(10), fake_trt(11)
    assert int8_path(trt10) == "calibrator" and int8_path(trt11) == "qdq"
    plan10 = build_plan(dataclasses.replace(_spec("int8"), int8_path="calibrator"), trt10)
    plan11 = build_plan(dataclasses.replace(_spec("int8"), int8_path="qdq"), trt11)
    assert plan10["calibrator"] and plan10["int8"] and plan10["onnx"] == "fp32"
    assert plan11 == {"onnx": "int8-qdq", "strongly_typed": True, "fp16": None, "tf32": None, "int8": None, "calibrator": False}
    monkeypatch.setitem(sys.modules, "tensorrt", trt10)
    tensors = [np.zeros((1, 8, 3, 112, 112), np.float32)] * 2
    config = create_config(dataclasses.replace(_spec("int8"), int8_path="calibrator"), None, plan10, tensors, "/tmp/calibration.cache")
    assert config.int8 and config.calibrator is not None  # Polygraphy's Calibrator over the calibration clips


def test_paddle_trt_refuses_a_pir_program(demo_artifacts, monkeypatch):
    for name in ("paddle-trt-fp32", "paddle-trt-fp16"):
        on_a_gpu = dataclasses.replace(BACKENDS[name], probe=None)  # as on a GPU machine with a TensorRT build
        reason = on_a_gpu.availability(ModelArtifacts(paddle_model=demo_artifacts.paddle_model))
        assert demo_artifacts.paddle_model.model_file.suffix == ".json"
        assert reason and "PIR programs (.json) never take" in reason and "plain Paddle GPU" in reason


def test_paddle_trt_on_legacy_programs_uses_tuned_shapes():
    plan = paddle_gpu_plan({"data_batch_0": ([1, 8, 3, 224, 224], [1, 8, 3, 224, 224], [4, 8, 3, 224, 224])}, "fp16",
                           "/cache", tuned_shapes="/cache/shape_range.pbtxt")
    calls = [c for c, _ in plan]
    assert "enable_tuned_tensorrt_dynamic_shape" in calls and "set_trt_dynamic_shape_info" not in calls


def test_paddle_trt_gives_every_input_its_shape_range():
    """SlowFast's two inputs each get their range (Paddle-TRT once set the first input's only), and the TensorRT
    max batch is the largest first dimension of any input."""
    slow, fast = ((1, 3, 4, 256, 256), (4, 3, 4, 256, 256), (4, 3, 4, 256, 256)), ((1, 3, 32, 256, 256), (4, 3, 32, 256, 256), (4, 3, 32, 256, 256))
    plan = dict(paddle_gpu_plan({"slow_input": slow, "fast_input": fast}, "fp32", "/cache"))
    low, high, opt = plan["set_trt_dynamic_shape_info"]
    assert low == {"slow_input": list(slow[0]), "fast_input": list(fast[0])}
    assert high == {"slow_input": list(slow[2]), "fast_input": list(fast[2])} and opt == {"slow_input": list(slow[1]), "fast_input": list(fast[1])}
    assert plan["enable_tensorrt_engine"][1] == 4


def test_engines_must_appear_or_it_was_not_tensorrt(tmp_path):
    from parity.backends.gpu import trt_engines_built

    assert not trt_engines_built(str(tmp_path))
    (tmp_path / "_opt_cache").mkdir()
    (tmp_path / "_opt_cache" / "trt_serialized_123_fp16.engine").write_bytes(b"x")
    assert trt_engines_built(str(tmp_path))


def test_the_trt_ep_may_not_hand_nodes_elsewhere():
    providers, _ = ort_trt_providers(True)
    assert providers == ["TensorrtExecutionProvider"]  # nothing to fall back to; CPU fallback is disabled in the session
    assert ort_trt_providers(True, allow_fallback=True)[0] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    profile = [
        {"cat": "Node", "name": "TensorrtExecutionProvider_TRTKernel_graph_0_kernel_time", "args": {"provider": "TensorrtExecutionProvider"}},
        {"cat": "Node", "name": "Squeeze.0_kernel_time", "args": {"provider": "CUDAExecutionProvider"}},
        {"cat": "Session", "name": "model_run", "args": {}},
    ]
    problem = trt_share_problem(profile)
    assert problem and "TensorRT ran 50% of the nodes" in problem and "Squeeze.0" in problem
    assert trt_share_problem(profile[:1]) is None


def test_a_gpu_gate_fails_not_skips_when_a_gpu_backend_is_unavailable(demo_artifacts, tmp_path, capsys):
    from parity.cli import main

    args = gate_arguments(exclude=["paddle-trt-fp32"])
    assert "paddle-trt-fp32" not in args[3] and "tensorrt-fp16" in args[3]
    code = main(["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx), "--clips",
                 str(demo_artifacts.val_list), *args, "--report", str(tmp_path)])
    assert code == 2 and "required backend" in capsys.readouterr().err


def test_tf32_is_off_in_a_paddle_gpu_process_whatever_it_inherited(demo_artifacts, monkeypatch):
    from parity.backends.isolated import IsolatedRunner

    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")
    assert backend_environment("paddle-gpu") == {"NVIDIA_TF32_OVERRIDE": "0"} and backend_environment("paddle-trt-fp16") == {}
    with IsolatedRunner("fixtures.defects:env_runner", ModelArtifacts(), name="x", env=backend_environment("paddle-gpu")) as runner:
        (out,) = runner.infer({"x": np.zeros(1, np.float32)}, check_inputs=False).values()
    assert out[0, 0] == 1.0


def test_paddle_trt_shape_collection_feeds_every_input(monkeypatch, tmp_path):
    """The shape-range run feeds each input its smallest, then its largest shape (it once fed only the first input:
    a two-input model could not run, so Paddle-TRT could not serve SlowFast)."""
    from types import SimpleNamespace

    from parity.artifacts.model_files import InputSpec
    from parity.backends import gpu
    from parity.backends.registry import ModelArtifacts

    fed, runs = [], []

    class Handle:
        def __init__(self, name):
            self.name = name

        def reshape(self, shape):
            pass

        def copy_from_cpu(self, array):
            fed.append((self.name, tuple(array.shape)))

    class Predictor:
        def get_input_handle(self, name):
            return Handle(name)

        def run(self):
            runs.append(len(fed))

    class Config:
        def __init__(self, *files):
            self.calls = {}

        def __getattr__(self, method):
            return lambda *args: self.calls.__setitem__(method, args)

    def create_predictor(config):
        (shape_file,) = config.calls["collect_shape_range_info"]
        Path(shape_file).write_text("")  # Paddle writes it when the predictor goes
        return Predictor()

    monkeypatch.setattr(gpu, "inference", SimpleNamespace(Config=Config, create_predictor=create_predictor))
    model = SimpleNamespace(model_file=tmp_path / "m.pdmodel", params_file=tmp_path / "m.pdiparams")
    art = ModelArtifacts(paddle_model=model, inputs=(InputSpec("slow_input", (-1, 3, 4, 32, 32), "ncthw"),
                                                     InputSpec("fast_input", (-1, 3, 16, 32, 32), "ncthw")), batch=2)
    assert Path(gpu.collect_tuned_shapes(art, str(tmp_path))).is_file()
    assert fed == [("slow_input", (1, 3, 4, 32, 32)), ("fast_input", (1, 3, 16, 32, 32)),
                   ("slow_input", (2, 3, 4, 32, 32)), ("fast_input", (2, 3, 16, 32, 32))]
    assert runs == [2, 4]
