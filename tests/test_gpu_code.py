"""The GPU backends' code, checked here without a GPU: Polygraphy's real loaders over faked TensorRT modules
with exactly the attributes each TensorRT major has, Paddle-TRT's refusals, and the TRT EP's fallback guard."""
import dataclasses
import sys
import types

import numpy as np
import pytest

from parity.backends import BACKENDS, ModelArtifacts
from parity.backends.gpu import backend_environment, gate_arguments, ort_trt_providers, paddle_gpu_plan, trt_share_problem
from parity.backends.tensorrt import EngineSpec, build_plan, fp16_path, profile_shapes


@pytest.fixture(autouse=True)
def _forget_fake_tensorrt():
    """Polygraphy's lazy modules keep what they imported: after a test, they forget a faked tensorrt."""
    yield
    for name, module in list(sys.modules.items()):
        if not name.startswith("polygraphy"):
            continue
        for value in list(vars(module).values()):
            if type(value).__name__ == "LazyModule" and getattr(value.module, "__name__", "") == "tensorrt":
                object.__setattr__(value, "module", None)


def _fake_trt(major: int):
    """A tensorrt module with what its major version has: TensorRT 11 removed BuilderFlag.FP16 (and the weak typing flags).

    Where each part comes from (no TensorRT wheel installs on this CPU machine, so this is not generated from the real
    bindings; `nox -s gpu` runs the same code on the real module):

    - What is faked at all is what Polygraphy 0.53.6 (the version installed here) reads from ``tensorrt`` on the paths
      these tests run: ``trt.Runtime(logger).deserialize_cuda_engine(bytes)`` in ``EngineFromBytes``
      (polygraphy/backend/trt/loader.py), ``trt.ILogger`` subclassed with ``trt.Logger.{INTERNAL_ERROR, ERROR, WARNING,
      INFO, VERBOSE}`` in ``get_trt_logger`` (backend/trt/util.py), ``trt.init_libnvinfer_plugins`` (loader.py),
      ``getattr(trt.BuilderFlag, name)`` in ``CreateConfig`` (backend/trt/config.py), and the calibrator base classes
      ``trt.IInt8EntropyCalibrator2`` (the default), ``IInt8LegacyCalibrator`` and ``IInt8Calibrator`` compared against
      in ``Calibrator`` (backend/trt/calibrator.py); plus what parity.backends.tensorrt probes (``BuilderFlag.FP16``,
      ``.INT8``, ``.TF32``, ``__version__``).
    - The difference between the majors is NVIDIA's list "Migrating from TensorRT 10.x to 11.x: Removed Python APIs"
      (docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html):
      ``BuilderFlag.FP16``, ``.INT8``, ``.FP8``, ``.BF16``, ``.INT4``, ``.FP4``, ``.OBEY_PRECISION_CONSTRAINTS``,
      ``.PREFER_PRECISION_CONSTRAINTS``, ``.DIRECT_IO`` and ``IBuilderConfig.int8_calibrator`` are gone in 11.x; ``TF32``
      is not on that list and stays. Only the members named above are faked (TensorRT 10's BuilderFlag has many more).
    - Leaving the ``IInt8*Calibrator`` classes out of 11 is our reading: the page removes their only use (the config's
      ``int8_calibrator``) but does not list the classes.
    - Strong typing is a network creation flag in both (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, which Polygraphy's
      ``NetworkFromOnnxPath(strongly_typed=True)`` sets), not a BuilderFlag.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = f"{major}.0.0"
    flags = {"TF32": 1} | ({"FP16": 0, "INT8": 3} if major < 11 else {})
    trt.BuilderFlag = types.SimpleNamespace(**flags)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)

    class Logger:
        WARNING, ERROR, INFO, VERBOSE, INTERNAL_ERROR = range(5)

        def __init__(self, *a, **k):
            self.min_severity = 0

    class ILogger(Logger):
        Severity = types.SimpleNamespace(WARNING=0, ERROR=1, INFO=2, VERBOSE=3, INTERNAL_ERROR=4)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, buffer):
            if not isinstance(buffer, (bytes, bytearray, memoryview)):
                raise TypeError(f"deserialize_cuda_engine() takes the engine's bytes, not {type(buffer).__name__}")
            return types.SimpleNamespace(serialized=bytes(buffer))

    trt.Logger, trt.ILogger, trt.Runtime = Logger, ILogger, Runtime
    if major < 11:  # the implicit-quantization calibrators went with BuilderFlag.INT8
        for base in ("IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8LegacyCalibrator", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator"):
            setattr(trt, base, type(base, (), {"__init__": lambda self: None}))
    trt.init_libnvinfer_plugins = lambda *a, **k: True
    return trt


def _spec(precision, path=""):
    mn, opt, mx = profile_shapes(8, 112, 1)
    return EngineSpec("a" * 64, "10.0.0", "NVIDIA L4", precision, "data_batch_0", mn, opt, mx, fp16_path=path)


@pytest.mark.parametrize("major", [10, 11])
def test_the_engine_loader_chain_runs_on_polygraphys_real_loaders(major, tmp_path, monkeypatch):
    """`BytesFromPath(lambda: ...)` would fail here with a TypeError before any engine exists (it opens its argument)."""
    import json

    from parity.backends.tensorrt import trt_runner

    fake = _fake_trt(major)
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
    trt10, trt11 = _fake_trt(10), _fake_trt(11)
    assert fp16_path(trt10) == "builder-flag" and fp16_path(trt11) == "strongly-typed"
    assert build_plan(_spec("fp16", "builder-flag"), trt10) == {"onnx": "fp32", "strongly_typed": False, "fp16": True, "tf32": None}
    # TensorRT 11: no BuilderFlag.FP16, so no fp16=True for Polygraphy's CreateConfig; the FP16 ONNX model, strongly typed
    assert build_plan(_spec("fp16", "strongly-typed"), trt11) == {"onnx": "fp16", "strongly_typed": True, "fp16": None, "tf32": None}
    for trt in (trt10, trt11):
        assert build_plan(_spec("fp32"), trt)["tf32"] is False  # TF32 off where the flag exists


def test_tensorrt_int8_calibrates_on_10_and_takes_the_qdq_model_on_11(monkeypatch):
    from parity.backends.tensorrt import create_config, int8_path

    trt10, trt11 = _fake_trt(10), _fake_trt(11)
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
    plan = paddle_gpu_plan("data_batch_0", {"min": [1, 8, 3, 224, 224], "opt": [1, 8, 3, 224, 224], "max": [4, 8, 3, 224, 224]}, "fp16",
                           "/cache", tuned_shapes="/cache/shape_range.pbtxt")
    calls = [c for c, _ in plan]
    assert "enable_tuned_tensorrt_dynamic_shape" in calls and "set_trt_dynamic_shape_info" not in calls


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
