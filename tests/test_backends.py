"""Backends that cannot run here (TensorRT, ORT-GPU, Paddle-GPU): everything testable without a GPU."""
import dataclasses
import json

import pytest

from parity.backends import BACKENDS, ModelArtifacts
from parity.backends.gpu import apply_plan, ort_cuda_providers, ort_trt_providers, paddle_gpu_plan
from parity.backends.tensorrt import EngineSpec, create_config, engine_mismatch, profile_shapes
from parity.cli import main

GPU_BACKENDS = ["onnxruntime-cuda", "onnxruntime-trt-fp16", "tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8", "paddle-gpu", "paddle-trt-fp32", "paddle-trt-fp16"]


def test_backends_command_lists_every_backend_with_reasons(capsys):
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    cpu = ["paddle-dygraph", "paddle", "paddle-native", "paddle-onednn", "onnxruntime", "onnxruntime-fp16", "onnxruntime-int8", "openvino"]
    assert set(rows) == {*cpu, "openvino-fp16", "openvino-bf16", *GPU_BACKENDS}
    for name in cpu:
        assert rows[name]["available"] and rows[name]["reason"] is None
    for name in ("openvino-fp16", "openvino-bf16"):  # what this CPU runs, or why not
        assert rows[name]["available"] or "this CPU does not run" in rows[name]["reason"] or "refuses" in rows[name]["reason"]
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert rows["tensorrt-fp16"]["reason"] == "unavailable: tensorrt not importable"
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "has no CUDAExecutionProvider" in rows["onnxruntime-cuda"]["reason"]
    import paddle

    if not paddle.is_compiled_with_cuda():
        assert "is a CPU build" in rows["paddle-gpu"]["reason"] and "is a CPU build" in rows["paddle-trt-fp16"]["reason"]
    assert main(["backends"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in rows)


def test_each_backend_carries_its_own_facts(tmp_path):
    from parity.artifacts import PaddleModel
    from parity.backends.gpu import backend_environment

    chain = sorted(BACKENDS, key=lambda n: BACKENDS[n].chain)
    assert chain[:4] == ["paddle-dygraph", "paddle-native", "paddle", "paddle-onednn"] and chain[-2:] == ["onnxruntime-int8", "tensorrt-int8"]
    assert chain.index("onnxruntime") < chain.index("openvino") < chain.index("onnxruntime-fp16")
    assert [n for n, b in BACKENDS.items() if b.tf32_off] == ["paddle-gpu", "paddle-trt-fp32"]
    assert backend_environment("paddle-gpu") == {"NVIDIA_TF32_OVERRIDE": "0"} and backend_environment("tensorrt-fp32") == {}
    assert [n for n, b in BACKENDS.items() if b.localizable] == ["paddle", "paddle-native", "onnxruntime", "onnxruntime-fp16"]
    assert [n for n, b in BACKENDS.items() if b.advisable] == ["onnxruntime-fp16", "onnxruntime-int8"]
    no_calibration = ModelArtifacts(onnx=tmp_path / "m.onnx")
    assert [n for n, b in BACKENDS.items() if b.needs_calibration] == ["onnxruntime-int8", "tensorrt-int8"]
    assert "no calibration clips" in dataclasses.replace(BACKENDS["tensorrt-int8"], requires=(), probe=None).availability(no_calibration)
    pir = ModelArtifacts(paddle_model=PaddleModel(tmp_path / "m.json", tmp_path / "m.pdiparams"))
    for name in ("paddle-trt-fp32", "paddle-trt-fp16"):
        assert "PIR programs" in dataclasses.replace(BACKENDS[name], probe=None).availability(pir)
    assert dataclasses.replace(BACKENDS["paddle-gpu"], probe=None).availability(pir) is None


def test_lanes_have_a_kind_not_a_name_to_parse():
    from parity.backends import LaneKind, select
    from parity.config import RunConfig

    lanes = select(RunConfig(backends=["paddle", "onnxruntime"], batch_check=2, preprocess="paddlevideo,cpp")).lanes
    assert [(lane.name, lane.kind) for lane in lanes] == [
        ("paddle", LaneKind.MAIN), ("onnxruntime", LaneKind.MAIN), ("paddle@b2", LaneKind.BATCH_CHECK), ("onnxruntime@b2", LaneKind.BATCH_CHECK),
        ("paddle[cpp]", LaneKind.VARIANT)]
    assert LaneKind.BATCH_CHECK == "batch_check" and json.dumps({"kind": LaneKind.VARIANT}) == '{"kind": "variant"}'


def _spec(**changes):
    mn, opt, mx = profile_shapes(8, 224, 4)
    return dataclasses.replace(EngineSpec("a" * 64, "10.7.0", "NVIDIA A10", "fp16", "data_batch_0", mn, opt, mx), **changes)


@pytest.mark.parametrize(
    "change",
    [{"onnx_sha256": "b" * 64}, {"tensorrt_version": "10.8.0"}, {"gpu": "NVIDIA T4"}, {"precision": "fp32"},
     {"max_shape": (8, 8, 3, 224, 224)}, {"opt_shape": (2, 8, 3, 224, 224)}, {"input_name": "x"}, {"tf32": True}],
)
def test_engine_cache_key_changes_with_every_part(change):
    assert _spec().key() == _spec().key()
    assert _spec(**change).key() != _spec().key()


def test_profile_shapes_span_the_batch_with_fixed_T_and_size():
    assert profile_shapes(16, 224, 8) == ((1, 16, 3, 224, 224), (8, 16, 3, 224, 224), (8, 16, 3, 224, 224))
    assert profile_shapes(8, 112, 1)[0] == profile_shapes(8, 112, 1)[2] == (1, 8, 3, 112, 112)
    with pytest.raises(ValueError):
        profile_shapes(8, 224, 0)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_polygraphy_config_for_each_precision(precision):
    config = create_config(_spec(precision=precision), timing_cache="/tmp/x.cache")
    assert config.fp16 is (precision == "fp16")
    assert config.tf32 is False  # FP32 stays FP32 on Ampere and later
    (profile,) = config.profiles
    shapes = profile["data_batch_0"]
    assert (tuple(shapes.min), tuple(shapes.opt), tuple(shapes.max)) == ((1, 8, 3, 224, 224), (4, 8, 3, 224, 224), (4, 8, 3, 224, 224))
    assert config.timing_cache_path == "/tmp/x.cache"


def test_polygraphy_engine_loader_fails_cleanly_without_tensorrt(demo_artifacts):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is importable here: the GPU tests cover the real build")
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    loader = EngineBytesFromNetwork(NetworkFromOnnxPath(str(demo_artifacts.onnx)), config=create_config(_spec()))
    with pytest.raises(PolygraphyException, match="tensorrt"):
        loader()


def test_engine_mismatch_is_explained():
    meta = _spec().to_dict()
    assert engine_mismatch(meta, "fp16", "10.7.0", ("NVIDIA A10",)) is None
    assert "TensorRT 10.7.0, this machine has 10.8.0" in engine_mismatch(meta, "fp16", "10.8.0", ("NVIDIA A10",))
    assert "built for GPU 'NVIDIA A10'" in engine_mismatch(meta, "fp16", "10.7.0", ("NVIDIA T4",))
    assert "fp16 engine, not fp32" in engine_mismatch(meta, "fp32", "10.7.0", ("NVIDIA A10",))


def test_ort_provider_options():
    providers, options = ort_cuda_providers()
    assert providers == ["CUDAExecutionProvider"] and options[0]["use_tf32"] == 0
    providers, options = ort_trt_providers(True, "/cache")
    assert providers == ["TensorrtExecutionProvider"]  # no silent fallback (tests/test_gpu_code.py)
    assert options[0]["trt_fp16_enable"] is True and options[0]["trt_engine_cache_path"] == "/cache"
    providers, options = ort_trt_providers(True, "/cache", allow_fallback=True)
    assert providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider"] and options[1]["use_tf32"] == 0


def test_ort_gpu_runner_refuses_the_silent_cpu_fallback(demo_artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: the GPU tests cover it")
    from parity.backends.onnxrt import session_loader

    providers, options = ort_cuda_providers()
    with pytest.raises(RuntimeError, match="could not start CUDAExecutionProvider and fell back to CPUExecutionProvider"):
        session_loader(str(demo_artifacts.onnx), providers, None, options)()


@pytest.mark.parametrize("precision", [None, "fp32", "fp16"])
def test_paddle_gpu_plan_uses_real_config_calls(precision):
    from paddle import inference

    shapes = {"min": [1, 8, 3, 224, 224], "opt": [4, 8, 3, 224, 224], "max": [4, 8, 3, 224, 224]}
    plan = paddle_gpu_plan({"data_batch_0": (shapes["min"], shapes["opt"], shapes["max"])}, precision, cache_dir="/c" if precision else None)
    methods = [m for m, _ in plan]
    assert methods[0] == "enable_use_gpu"
    for method, args in plan:
        assert hasattr(inference.Config, method), method
        for a in args:
            if isinstance(a, tuple) and a and a[0] == "PrecisionType":
                assert hasattr(inference.PrecisionType, a[1])
    if precision:
        (trt_args,) = [a for m, a in plan if m == "enable_tensorrt_engine"]
        assert trt_args[1] == 4 and trt_args[3] == ("PrecisionType", "Half" if precision == "fp16" else "Float32")
        (dyn,) = [a for m, a in plan if m == "set_trt_dynamic_shape_info"]
        assert dyn == ({"data_batch_0": shapes["min"]}, {"data_batch_0": shapes["max"]}, {"data_batch_0": shapes["opt"]})
    else:
        assert "enable_tensorrt_engine" not in methods


def test_paddle_cpu_reference_config(demo_artifacts):
    from parity.backends.paddle_inference import make_config

    config = make_config(demo_artifacts.paddle_model, threads=2)
    assert not config.use_gpu() and not config.mkldnn_enabled() and not config.ir_optim()
    assert config.cpu_math_library_num_threads() == 2


def test_paddle_gpu_plan_on_a_cpu_build_fails_with_paddles_reason(demo_artifacts):
    import paddle
    from paddle import inference

    if paddle.is_compiled_with_cuda():
        pytest.skip("paddlepaddle-gpu is installed: the GPU tests cover it")
    config = inference.Config(str(demo_artifacts.paddle_model.model_file), str(demo_artifacts.paddle_model.params_file))
    with pytest.raises(RuntimeError, match="TENSORRT"):
        apply_plan(config, paddle_gpu_plan(None, "fp16"))


class _Boom:
    """A runner that crashes mid-run, as a backend running out of memory does."""

    name = "boom"
    inference_time = 0.0

    def activate(self):
        pass

    def deactivate(self):
        pass

    def infer(self, feed, check_inputs=True):
        raise MemoryError("out of memory allocating 4.0 GiB")


@pytest.mark.slow
def test_a_crashing_backend_is_its_error_and_the_others_complete(demo_run_config, parity_cache, monkeypatch, tmp_path):
    from parity.run import run

    crashing = dataclasses.replace(BACKENDS["onnxruntime-fp16"], make_runner=lambda art: _Boom())
    monkeypatch.setitem(BACKENDS, "onnxruntime-fp16", crashing)
    result = run(dataclasses.replace(demo_run_config, report=str(tmp_path)), cache=parity_cache)
    status = {b.name: (b.status, b.reason) for b in result.backends}
    assert status["onnxruntime-fp16"] == ("error", "MemoryError: out of memory allocating 4.0 GiB")
    assert status["paddle"][0] == status["onnxruntime"][0] == "ok"
    assert [c.backend for c in result.comparisons] == ["onnxruntime"] and result.comparisons[0].passed
    assert result.verdict == "fail"  # a backend that crashed never counts as passed


@pytest.mark.slow
def test_unavailable_backend_is_reported_and_require_exits_2(demo_artifacts, tmp_path, capsys, monkeypatch):
    # An unavailable backend on any machine (with or without TensorRT): its probe says so.
    reason = "unavailable: no CUDA device (simulated)"
    monkeypatch.setitem(BACKENDS, "tensorrt-fp16", dataclasses.replace(BACKENDS["tensorrt-fp16"], requires=(), probe=lambda: reason))
    args = ["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
            "--clips", str(demo_artifacts.val_list), "--backends", "paddle,onnxruntime,tensorrt-fp16"]
    assert main([*args, "--report", str(tmp_path / "a")]) == 0
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    trt = next(b for b in data["backends"] if b["name"] == "tensorrt-fp16")
    assert trt["status"] == "unavailable" and trt["reason"] == reason
    assert [c["backend"] for c in data["comparisons"]] == ["onnxruntime"]
    html = (tmp_path / "a" / "index.html").read_text()
    assert "tensorrt-fp16" in html and reason in html
    capsys.readouterr()
    assert main([*args, "--require", "tensorrt-fp16", "--report", str(tmp_path / "b")]) == 2
    assert "required backend tensorrt-fp16 did not run (unavailable: no CUDA device (simulated))" in capsys.readouterr().err
    assert main(["build", "--onnx", str(demo_artifacts.onnx), "--precision", "fp16"]) == 2
    assert f"cannot build a TensorRT engine here: {reason}" in capsys.readouterr().err


@pytest.mark.slow
def test_backends_all_runs_every_available_backend(demo_run_config, parity_cache, tmp_path):
    from parity.run import run

    result = run(dataclasses.replace(demo_run_config, backends=["all"], report=str(tmp_path)), cache=parity_cache)
    ran = {b.name: b for b in result.backends}
    assert set(ran) == {name for name, b in BACKENDS.items() if b.availability() is None}
    needs = {"paddle-dygraph": "no training checkpoint given (--weights)", "onnxruntime-int8": "no calibration clips given (--calibration LIST)"}
    for name, record in ran.items():  # all ran, but for those that need an artifact this run did not give
        assert record.status == "ok" or (record.status == "unavailable" and needs[name] in record.reason), (name, record.reason)
    assert "openvino" in ran and next(c for c in result.comparisons if c.backend == "openvino").passed


@pytest.mark.slow
def test_isolated_runner_matches_in_process(demo_artifacts, clean_run):
    import numpy as np

    from parity.backends.isolated import IsolatedRunner
    from parity.preprocess import PreprocessConfig, load_clip_tensor

    spec = demo_artifacts.training["model"]
    clip = demo_artifacts.val_list.parent / demo_artifacts.val_list.read_text().split()[0]
    x = load_clip_tensor(clip, PreprocessConfig.for_size(spec["num_seg"], spec["size"]))
    art = ModelArtifacts(onnx=demo_artifacts.onnx, paddle_model=demo_artifacts.paddle_model)
    with IsolatedRunner("onnxruntime", art, name="onnxruntime") as runner:
        (out,) = runner.infer({"data_batch_0": x}, check_inputs=False).values()
        assert runner.inference_time > 0
    np.testing.assert_allclose(out[0], clean_run.logits["onnxruntime"][0], atol=1e-6)


@pytest.mark.slow
def test_a_segfaulting_backend_is_its_error_and_the_run_goes_on(demo_run_config, parity_cache, monkeypatch, tmp_path):
    from parity.backends.isolated import IsolatedRunner
    from parity.run import run

    crashing = dataclasses.replace(
        BACKENDS["onnxruntime-fp16"], make_runner=lambda art: IsolatedRunner("fixtures.defects:segfaulting_runner", art, name="x")
    )
    monkeypatch.setitem(BACKENDS, "onnxruntime-fp16", crashing)
    result = run(dataclasses.replace(demo_run_config, report=str(tmp_path)), cache=parity_cache)
    status = {b.name: (b.status, b.reason) for b in result.backends}
    assert status["onnxruntime-fp16"][0] == "error"
    assert status["onnxruntime-fp16"][1] == "RuntimeError: the backend process died (signal SIGSEGV): FatalError: simulated native crash in infer"
    assert status["paddle"][0] == status["onnxruntime"][0] == "ok" and result.verdict == "fail"


@pytest.mark.slow
def test_isolate_flag_runs_every_backend_in_its_own_process(demo_run_config, parity_cache, clean_run, tmp_path):
    import os

    from parity.run import run

    result = run(dataclasses.replace(demo_run_config, isolate=True, report=str(tmp_path)), cache=parity_cache)
    assert result.verdict == "pass"
    pids = [b.pid for b in result.backends]
    assert None not in pids and os.getpid() not in pids and len(set(pids)) == len(pids)  # each in a child of its own
    assert all(b.pid == os.getpid() for b in clean_run.backends if b.name != "paddle-onednn")
    # Bitwise: the same runner (same backend, same thread count from the run's budget) on the same tensors, batch 1;
    # only the process differs, and a spawned one starts the math libraries with the same settings. A test that varies
    # threads between the two sides must compare within the FP32 noise floor instead (reduction order changes).
    for name in ("paddle", "onnxruntime"):
        assert (result.logits[name] == clean_run.logits[name]).all()


@pytest.mark.slow
def test_paddle_onednn_survives_the_fuse_pass_crash(small_pptsm_r50, tmp_path, parity_cache):
    """Paddle 3.3's oneDNN conv+leaky_relu fusion segfaults on PP-TSM v1: an error of that backend, not of the run."""
    import numpy as np

    from parity.config import RunConfig
    from parity.run import run

    pm, listing = small_pptsm_r50
    cfg = RunConfig(paddle_model=str(pm.model_file), clips=str(listing), backends=["paddle", "paddle-onednn"], report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    status = {b.name: b for b in result.backends}
    assert status["paddle"].status == "ok" and np.isfinite(result.logits["paddle"]).all()
    onednn = status["paddle-onednn"]
    # Either Paddle has fixed the fusion (then the fused model must match) or the crash is reported.
    if onednn.status == "ok":
        assert result.comparisons[0].passed
    else:
        assert onednn.status == "error" and "died" in onednn.reason
