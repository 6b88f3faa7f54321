"""Issue 21: the TensorRT gate must not pass on a stale or substituted engine. Checked here without a GPU.

The fakes behave like the real APIs at the level the code calls, and say which real version they mirror:
- ``tensorrt``: the tensorrt-cu12 10.16 bindings (``BuilderFlag.FP16``/``INT8``, ``IInt8EntropyCalibrator2``) and
  11.4 (neither), ``Runtime.deserialize_cuda_engine(bytes)``, ``ICudaEngine.num_layers``/``create_engine_inspector()``,
  ``IEngineInspector.get_layer_information(i, LayerInformationFormat.JSON)`` with DETAILED verbosity's layer JSON
  (TensorRT 10: ``"Format/Datatype"``; 11: ``"Datatype"`` and ``"Format"``);
- ``onnxruntime.InferenceSession`` of onnxruntime-gpu 1.23 with the TensorRT EP loaded: ``get_providers()`` lists the
  requested providers, and its profile is a REAL onnxruntime profile (a real CPU session runs the model with the
  caller's SessionOptions), with the nodes relabelled as the TRT EP reports them (one
  ``TensorrtExecutionProvider_TRTKernel_graph_*`` node per TensorRT subgraph, the rest on CUDAExecutionProvider);
- ``paddle.inference`` 3.3's Predictor (``get_input_names``/``get_input_handle``/``run``/``get_output_handle``);
- the CUDA driver API (``cuInit``/``cuDeviceGet``/``cuDeviceGetName``/``cuDeviceGetAttribute``) and ``nvidia-smi``'s CSV.
Polygraphy 0.53.6 is real throughout (Calibrator, CreateConfig, TrtRunner, OnnxrtRunner, EngineFromBytes).
"""
import dataclasses
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from fixtures.fake_tensorrt import fake_trt, forget_fake_tensorrt  # noqa: F401  (an autouse fixture)
from parity.backends import BACKENDS, ModelArtifacts
from parity.errors import HarnessError

REAL_SESSION = onnxruntime.InferenceSession
DEVICE = {"name": "NVIDIA L4", "compute_capability": "8.9", "source": "cuda-driver"}


@pytest.fixture
def one_gpu(monkeypatch):
    """The device this process gets (as the driver API would say) and the installed GPU libraries."""
    monkeypatch.setattr("parity.backends.gpu.cuda_device", lambda ordinal=0, lib=None: dict(DEVICE), raising=False)
    monkeypatch.setattr("parity.backends.gpu.gpu_names", lambda: (DEVICE["name"],))
    versions = {"tensorrt": "tensorrt-cu12==10.16.0", "polygraphy": "polygraphy==0.53.6", "onnxruntime": "onnxruntime-gpu==1.23.2",
                "paddle": "paddlepaddle-gpu==3.3.1"}
    monkeypatch.setattr("parity.backends.gpu.library_versions", lambda: dict(versions), raising=False)


# ----------------------------------------------------------------------------- fakes


def _layer(name, dtype, major=10):
    """One layer as the inspector's DETAILED JSON gives it (TensorRT 10: "Format/Datatype"; 11: "Datatype" + "Format")."""
    fmt = {"fp32": "Row major linear FP32", "fp16": "Channel major FP16 format where channel % 8 == 0", "int8": "Channel major Int8 format"}[dtype]
    tensor = {"Name": f"{name}_out", "Location": "Device", "Dimensions": [1, 8, 16, 16]}
    if major < 11:
        tensor["Format/Datatype"] = fmt
    else:
        tensor.update(Datatype={"fp32": "Float", "fp16": "Half", "int8": "Int8"}[dtype], Format="Row major linear")
    return {"Name": name, "LayerType": "CaskConvolution", "Inputs": [dict(tensor, Name=f"{name}_in")], "Outputs": [tensor],
            "TacticValue": "0x1"}


def _engine(tmp_path, dtypes, precision=None, sidecar=True, onnx_sha="a" * 64, trt_version="10.16.0.72", name="model.engine"):
    from parity.backends.tensorrt import EngineSpec, profile_shapes

    engine = tmp_path / name
    engine.write_bytes(json.dumps([_layer(f"conv{i}", d) for i, d in enumerate(dtypes)]).encode())
    if sidecar:
        mn, opt, mx = profile_shapes(8, 16, 1)
        spec = EngineSpec(onnx_sha, trt_version, DEVICE["name"], precision, "data_batch_0", mn, opt, mx)
        engine.with_name(name + ".json").write_text(json.dumps({**spec.to_dict(), "compute_capability": "8.9"}))
    return engine


def _activate_engine_only(monkeypatch):
    """TrtRunner.activate_impl's first step, as Polygraphy 0.53.6 does it (``invoke_if_callable`` on the loader, keep the
    ICudaEngine); the rest (execution context, CUDA stream) needs a GPU and is left out."""
    from polygraphy import util
    from polygraphy.backend.trt import TrtRunner

    def activate_impl(self):
        self.engine, _ = util.invoke_if_callable(self._engine_or_context)

    monkeypatch.setattr(TrtRunner, "activate_impl", activate_impl)
    monkeypatch.setattr(TrtRunner, "deactivate_impl", lambda self: None)


def _tiny_onnx(path: Path, weight: float):
    """A Conv + Relu + Neg model: same tensor names whatever the weight (a re-export of a retrained model)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((2, 2, 1, 1), weight, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0"), helper.make_node("Relu", ["c"], ["r"], name="relu0"),
             helper.make_node("Neg", ["r"], ["y"], name="neg0")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


class FakeTrtEpSession:
    """onnxruntime-gpu 1.23's InferenceSession with the TensorRT EP loaded. Runs on a real CPU session with the caller's
    SessionOptions (so profiling is real), and relabels the profile's Node events as the TRT EP reports them."""

    created: list = []
    trt_nodes: set = set()  # nodes TensorRT takes (fused into one TRTKernel node); the rest run on CUDA

    def __init__(self, path, sess_options=None, providers=None, provider_options=None):
        self.providers, self.provider_options = list(providers), list(provider_options)
        FakeTrtEpSession.created.append(self)
        # the TRT EP partitions the graph's own nodes: the CPU stand-in must not fuse or rename them
        sess_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.real = REAL_SESSION(path, sess_options, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return self.providers

    def __getattr__(self, name):  # get_inputs, get_outputs, run, get_modelmeta: the real session's
        return getattr(self.real, name)

    def end_profiling(self):
        path = self.real.end_profiling()
        events, fused = [], False
        for event in json.loads(Path(path).read_text()):
            args = event.get("args") or {}
            if event.get("cat") == "Node" and "provider" in args:
                if event["name"].rsplit("_kernel_time", 1)[0] in self.trt_nodes:
                    if fused:
                        continue
                    fused = True
                    event = dict(event, name="TensorrtExecutionProvider_TRTKernel_graph_main_graph_123_0_0_kernel_time",
                                 args=dict(args, provider="TensorrtExecutionProvider", op_name="TRTKernel_graph_main_graph_123_0"))
                else:
                    event = dict(event, args=dict(args, provider="CUDAExecutionProvider"))
            events.append(event)
        Path(path).write_text(json.dumps(events))
        return path


@pytest.fixture
def trt_ep(monkeypatch, one_gpu):
    FakeTrtEpSession.created = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeTrtEpSession)
    return FakeTrtEpSession


class FakePredictor:
    """paddle.inference 3.3's Predictor; ``run`` writes what Paddle-TRT writes into the optim cache dir (``writes``)."""

    def __init__(self, writes: list[Path]):
        self.writes, self.x = writes, None

    def get_input_names(self):
        return ["data_batch_0"]

    def get_output_names(self):
        return ["logits"]

    def get_input_handle(self, name):
        predictor = self

        class Handle:
            def reshape(self, shape):
                pass

            def copy_from_cpu(self, array):
                predictor.x = array

            def shape(self):
                return [-1, 8, 3, 16, 16]

        return Handle()

    def get_output_handle(self, name):
        return types.SimpleNamespace(copy_to_cpu=lambda: np.zeros((1, 4), np.float32))

    def run(self):
        for path in self.writes:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"serialized engine for this key")
        return True


def _paddle_files(tmp_path, name, params: bytes):
    from parity.artifacts import PaddleModel

    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.pdmodel").write_bytes(b"program: data_batch_0 -> conv -> logits")  # the same program (tensor names)
    (folder / "model.pdiparams").write_bytes(params)
    return PaddleModel(folder / "model.pdmodel", folder / "model.pdiparams")


# ----------------------------------------------------------------------------- 1. content-keyed engine caches


def test_a_model_with_the_same_tensor_names_and_other_weights_gets_new_paddle_trt_and_trt_ep_caches(tmp_path, trt_ep):
    """Fails before: both Paddle-TRT models got CACHE/paddle-trt/paddle-trt-fp16 and both TRT EP sessions CACHE/ort-trt-cache."""
    from parity.artifacts import ArtifactCache

    cache = ArtifactCache(tmp_path / "cache")
    dirs = {}
    for weights in (1.0, 2.0):
        model = _paddle_files(tmp_path, f"paddle-{weights}", np.full(16, weights, np.float32).tobytes())
        (tmp_path / f"onnx-{weights}").mkdir()
        onnx = _tiny_onnx(tmp_path / f"onnx-{weights}" / "model.onnx", weights)  # the same file name, tensor names and graph
        art = ModelArtifacts(paddle_model=model, onnx=onnx, cache=cache, allow_trt_fallback=True, num_seg=8, size=16)
        paddle_dir = BACKENDS["paddle-trt-fp16"].make_runner(art).trt_cache_dir
        FakeTrtEpSession.trt_nodes = {"conv0", "relu0", "neg0"}
        with BACKENDS["onnxruntime-trt-fp16"].make_runner(art) as runner:
            runner.infer({"x": np.ones((1, 2, 2, 2), np.float32)}, check_inputs=False)
        (options, *_) = FakeTrtEpSession.created[-1].provider_options
        dirs[weights] = (paddle_dir, options["trt_engine_cache_path"])
    assert dirs[1.0][0] != dirs[2.0][0] and dirs[1.0][1] != dirs[2.0][1]
    for paddle_dir, ort_dir in dirs.values():
        key = json.loads((Path(paddle_dir) / "key.json").read_text())
        assert key["gpu"] == {"name": "NVIDIA L4", "compute_capability": "8.9"} and key["code"] and key["versions"]["polygraphy"]
        assert key["tf32"] == "tensorrt-default" and key["precision"] == "fp16"
        assert Path(ort_dir).parent.name == "ort-trt" and Path(paddle_dir).parent.name == "paddle-trt"


def test_the_engine_key_changes_with_each_thing_an_engine_depends_on(tmp_path, one_gpu):
    from parity.backends.gpu import engine_key

    onnx = _tiny_onnx(tmp_path / "m.onnx", 1.0)
    base = engine_key([onnx], "fp32")
    other_gpu = engine_key([onnx], "fp32", device={"name": "NVIDIA L4", "compute_capability": "9.0"})
    assert base != other_gpu and base != engine_key([onnx], "fp32", tf32=True) and base != engine_key([onnx], "int8", calibration="c")
    assert base != engine_key([onnx], "fp32", versions={"tensorrt": "tensorrt-cu12==10.15.0"})
    assert base == engine_key([onnx], "fp32")


def test_a_leftover_engine_from_another_key_does_not_satisfy_the_build_check(tmp_path, monkeypatch):
    """Fails before: trt_engines_built accepted any trt_serialized* file in the folder, so Paddle loading a stale engine passed."""
    from paddle import inference

    from parity.backends.paddle_inference import PaddleInferenceRunner

    model = _paddle_files(tmp_path, "m", b"weights")
    folder = tmp_path / "paddle-trt" / "key-b"
    stale = folder / "_opt_cache" / "trt_serialized_data_batch_0_4019_fp16"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"engine built under key a, copied here")  # Paddle's own key: tensor names, max batch, precision
    monkeypatch.setattr(inference, "create_predictor", lambda config: FakePredictor([]))  # Paddle loads it, builds nothing
    runner = PaddleInferenceRunner(model, config_factory=lambda: None, name="paddle-trt-fp16", trt_cache_dir=str(folder))
    with pytest.raises(RuntimeError, match="built no TensorRT engine under its key"):
        with runner:
            runner.infer({"data_batch_0": np.zeros((1, 8, 3, 16, 16), np.float32)}, check_inputs=False)

    # built in this run: accepted and recorded for the key; the next run that loads the recorded engine is accepted too
    stale.unlink()
    monkeypatch.setattr(inference, "create_predictor", lambda config: FakePredictor([stale]))
    runner = PaddleInferenceRunner(model, config_factory=lambda: None, name="paddle-trt-fp16", trt_cache_dir=str(folder))
    with runner:
        runner.infer({"data_batch_0": np.zeros((1, 8, 3, 16, 16), np.float32)}, check_inputs=False)
    assert runner.evidence()["engines"]["built"] == ["_opt_cache/trt_serialized_data_batch_0_4019_fp16"]
    monkeypatch.setattr(inference, "create_predictor", lambda config: FakePredictor([]))
    runner = PaddleInferenceRunner(model, config_factory=lambda: None, name="paddle-trt-fp16", trt_cache_dir=str(folder))
    with runner:
        runner.infer({"data_batch_0": np.zeros((1, 8, 3, 16, 16), np.float32)}, check_inputs=False)
    assert runner.evidence()["engines"]["loaded"] == ["_opt_cache/trt_serialized_data_batch_0_4019_fp16"]


def test_paddle_trt_fp32_says_tf32_rests_on_the_environment(tmp_path, one_gpu):
    from parity.artifacts import ArtifactCache

    art = ModelArtifacts(paddle_model=_paddle_files(tmp_path, "m", b"w"), cache=ArtifactCache(tmp_path / "c"), num_seg=8, size=16)
    runner = BACKENDS["paddle-trt-fp32"].make_runner(art)
    assert json.loads((Path(runner.trt_cache_dir) / "key.json").read_text())["tf32"] is False
    assert "NVIDIA_TF32_OVERRIDE=0" in runner.notes["tf32"]


def test_the_gpu_is_the_device_cuda_visible_devices_gives(tmp_path, monkeypatch):
    """Fails before: gpu_names() listed every GPU nvidia-smi knows, whatever CUDA_VISIBLE_DEVICES said."""
    import ctypes

    from parity.backends import gpu

    smi = tmp_path / "nvidia-smi"  # nvidia-smi 570's CSV for --query-gpu (PCI bus order, every GPU)
    smi.write_text("#!/bin/sh\ncase \"$1\" in\n"
                   "  *index,uuid,name,compute_cap*) printf '0, GPU-1111aaaa, NVIDIA L4, 8.9\\n1, GPU-2222bbbb, NVIDIA A100-SXM4-80GB, 8.0\\n';;\n"
                   "  *) printf 'NVIDIA L4\\nNVIDIA A100-SXM4-80GB\\n';;\nesac\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for cached in ("_smi_rows", "gpu_names"):
        getattr(getattr(gpu, cached, None), "cache_clear", lambda: None)()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu.gpu_names() == ("NVIDIA A100-SXM4-80GB",)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1111")
    assert gpu.gpu_names() == ("NVIDIA L4",)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.gpu_names() == () and "hides all 2 GPU(s)" in gpu.cuda_device_reason()
    gpu._smi_rows.cache_clear()

    class Driver:  # libcuda.so.1: ordinal 0 is the first visible device, in CUDA's order
        def cuInit(self, flags):
            return 0

        def cuDeviceGet(self, ref, ordinal):
            ref._obj.value = 0 if ordinal == 0 else 1
            return 0 if ordinal == 0 else 101  # CUDA_ERROR_INVALID_DEVICE

        def cuDeviceGetName(self, buf, size, device):
            buf.value = b"NVIDIA A100-SXM4-80GB"
            return 0

        def cuDeviceGetAttribute(self, ref, attribute, device):
            ref._obj.value = {75: 8, 76: 0}[attribute]
            return 0

    assert isinstance(ctypes.c_int(), ctypes.c_int)
    assert gpu.cuda_device(0, Driver()) == {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0", "source": "cuda-driver"}
    assert gpu.cuda_device(1, Driver()) is None


# ----------------------------------------------------------------------------- 2. --trt-engine: sidecar, precision, inspector


def test_an_engine_without_a_sidecar_is_refused_unless_trusted(tmp_path, monkeypatch, one_gpu):
    """Fails before: a missing sidecar was accepted unchecked (check_engine_sidecar returned {})."""
    from parity.backends.tensorrt import trt_runner

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(10))
    _activate_engine_only(monkeypatch)
    engine = _engine(tmp_path, ["fp16", "fp16"], sidecar=False)
    with pytest.raises(HarnessError, match="no sidecar model.engine.json"):
        trt_runner(ModelArtifacts(trt_engine=engine), "fp16", "tensorrt-fp16").activate()
    art = ModelArtifacts(trt_engine=engine)
    art.trust_engine = True  # --trust-engine
    runner = trt_runner(art, "fp16", "tensorrt-fp16")
    with runner:
        evidence = runner.evidence()
    assert evidence["verified"] is False and evidence["layer_precisions"]["by_datatype"] == {"fp16": 2}


def test_an_fp32_engine_offered_as_tensorrt_fp16_is_refused_by_the_inspector(tmp_path, monkeypatch, one_gpu):
    """A substituted engine whose sidecar says fp16. Fails before: nothing looked inside the engine, it ran as tensorrt-fp16."""
    from parity.backends.tensorrt import trt_runner

    for major in (10, 11):
        trt = fake_trt(major)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        _activate_engine_only(monkeypatch)
        engine = _engine(tmp_path, ["fp32", "fp32", "fp32"], precision="fp16", trt_version=trt.__version__)
        if major == 11:  # TensorRT 11's inspector splits "Format/Datatype"
            engine.write_bytes(json.dumps([_layer(f"conv{i}", "fp32", 11) for i in range(3)]).encode())
        with pytest.raises(HarnessError, match="finds an fp32 engine .*not fp16"):
            trt_runner(ModelArtifacts(trt_engine=engine), "fp16", "tensorrt-fp16").activate()
        art = ModelArtifacts(trt_engine=engine)
        art.trust_engine = True  # even trusted: the layers show it is not FP16
        with pytest.raises(HarnessError, match="not fp16"):
            trt_runner(art, "fp16", "tensorrt-fp16").activate()

    engine = _engine(tmp_path, ["fp32", "fp16"], precision="fp16", name="good.engine", trt_version=trt.__version__)
    with trt_runner(ModelArtifacts(trt_engine=engine), "fp16", "tensorrt-fp16") as runner:
        evidence = runner.evidence()
    assert evidence["verified"] and evidence["source"] == "--trt-engine" and evidence["model_sha256"] == "a" * 64 and evidence["key"]
    assert evidence["layer_precisions"]["by_datatype"] == {"fp16": 1, "fp32": 1}
    engine = _engine(tmp_path, ["fp16", "fp16"], precision="int8", name="int8.engine", trt_version=trt.__version__)
    with pytest.raises(HarnessError, match="finds an fp16 engine .*not int8"):
        trt_runner(ModelArtifacts(trt_engine=engine), "int8", "tensorrt-int8").activate()


def test_an_engine_serves_only_the_backend_of_its_precision(tmp_path, monkeypatch, one_gpu):
    """Fails before: an fp16 --trt-engine made tensorrt-fp32 an error (a mismatch) instead of building its own engine."""
    from parity.backends import tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(10))
    _activate_engine_only(monkeypatch)
    onnx = _tiny_onnx(tmp_path / "m.onnx", 1.0)
    from parity.artifacts import sha256_file

    engine = _engine(tmp_path, ["fp16"], precision="fp16", onnx_sha=sha256_file(onnx))
    own = _engine(tmp_path, ["fp32"], precision="fp32", onnx_sha=sha256_file(onnx), name="own.engine")
    monkeypatch.setattr(tensorrt, "build_engine", lambda *a, **k: own)
    with tensorrt.trt_runner(ModelArtifacts(trt_engine=engine, onnx=onnx), "fp32", "tensorrt-fp32") as runner:
        evidence = runner.evidence()
    assert evidence["engine"] == str(own) and "is a fp16 engine; tensorrt-fp32 built its own" in evidence["trt_engine_skipped"]
    with pytest.raises(HarnessError, match="tensorrt-fp32 needs a fp32 one"):
        tensorrt.trt_runner(ModelArtifacts(trt_engine=engine), "fp32", "tensorrt-fp32").activate()
    other = _engine(tmp_path, ["fp16"], precision="fp16", onnx_sha="b" * 64, name="other.engine")
    with pytest.raises(HarnessError, match="built from another model"):
        tensorrt.trt_runner(ModelArtifacts(trt_engine=other, onnx=onnx), "fp16", "tensorrt-fp16").activate()


# ----------------------------------------------------------------------------- 3. --allow-trt-fallback: the share, live


def test_allow_trt_fallback_with_a_zero_tensorrt_share_is_an_error_and_the_share_is_reported(tmp_path, trt_ep):
    """Fails before: trt_share_problem had no caller; a TRT EP session where TensorRT ran nothing passed on CUDA."""
    from parity.artifacts import ArtifactCache

    art = ModelArtifacts(onnx=_tiny_onnx(tmp_path / "m.onnx", 1.0), cache=ArtifactCache(tmp_path / "c"), allow_trt_fallback=True)
    x = {"x": np.ones((1, 2, 2, 2), np.float32)}
    trt_ep.trt_nodes = set()  # TensorRT took no node: everything on CUDA
    runner = BACKENDS["onnxruntime-trt-fp16"].make_runner(art)
    with pytest.raises(RuntimeError, match="TensorRT ran none of the model's 3 nodes"):
        with runner:
            runner.infer(x, check_inputs=False)
    trt_ep.trt_nodes = {"conv0", "relu0"}  # one TensorRT subgraph; Neg on CUDA
    with BACKENDS["onnxruntime-trt-fp16"].make_runner(art) as runner:
        runner.infer(x, check_inputs=False)
        runner.infer(x, check_inputs=False)  # profiled once
        share = runner.evidence()["trt_share"]
    assert share["tensorrt_nodes"] == 1 and share["share"] == 0.5 and share["elsewhere"] == {"neg0": "CUDAExecutionProvider"}
    assert runner.evidence()["allow_fallback"] is True
    assert not list(Path(os.path.dirname(runner.profile_prefix)).glob(os.path.basename(runner.profile_prefix) + "*"))


# ----------------------------------------------------------------------------- 4. INT8 that builds


def _int8_spec(batch):
    from parity.backends.tensorrt import EngineSpec, profile_shapes

    mn, opt, mx = profile_shapes(8, 16, batch)
    return EngineSpec("a" * 64, "10.16.0.72", "NVIDIA L4", "int8", "data_batch_0", mn, opt, mx, int8_path="calibrator")


def test_the_trt10_calibrator_gets_batches_of_the_shape_polygraphy_asks_for(monkeypatch):
    """Fails before: clips of [1, T, 3, S, S] against the profile's OPT shape at batch 4: get_batch returned None at once."""
    from polygraphy.backend.trt import util as trt_util
    from polygraphy.common import TensorMetadata

    from parity.backends.tensorrt import build_plan, create_config

    trt10 = fake_trt(10)
    monkeypatch.setitem(sys.modules, "tensorrt", trt10)
    spec = _int8_spec(4)
    clips = [np.full((1, 8, 3, 16, 16), i, np.float32) for i in range(6)]
    config = create_config(spec, None, build_plan(spec, trt10), clips, None)
    calibrator = config.calibrator
    # what try_setup_polygraphy_calibrator does: the calibration profile's OPT shape (TensorRT calibrates only at OPT)
    calibrator.set_input_metadata(TensorMetadata().add("data_batch_0", np.float32, spec.opt_shape))
    fed = []
    monkeypatch.setattr(trt_util, "_get_array_on_gpu", lambda arr, name, buffers, stream=None: fed.append(arr) or 0x1000)
    while calibrator.get_batch(["data_batch_0"]) is not None:
        pass
    assert [a.shape for a in fed] == [spec.opt_shape, spec.opt_shape]
    assert sorted({float(a[i, 0, 0, 0, 0]) for a in fed for i in range(4)}) == [0, 1, 2, 3, 4, 5]  # every clip seen


def test_calibration_decodes_nothing_on_a_cache_hit(tmp_path, monkeypatch):
    """Fails before: build_engine decoded the calibration clips before looking in the cache (64 decodes each start)."""
    import polygraphy.backend.trt as ptrt

    from parity.artifacts import ArtifactCache
    from parity.backends import tensorrt
    from parity.precision import int8

    trt10 = fake_trt(10)
    monkeypatch.setitem(sys.modules, "tensorrt", trt10)
    decodes = []
    monkeypatch.setattr(int8, "calibration_tensors", lambda listing, pre: decodes.append(listing) or ([np.zeros((1, 8, 3, 16, 16), np.float32)], ["h"]))
    monkeypatch.setattr(ptrt, "NetworkFromOnnxPath", lambda path, strongly_typed=None: ("network", path))
    monkeypatch.setattr(ptrt, "EngineBytesFromNetwork", lambda network, config=None, save_timing_cache=None: (lambda: b"engine"))
    cache, spec, onnx = ArtifactCache(tmp_path), _int8_spec(1), _tiny_onnx(tmp_path / "m.onnx", 1.0)
    first = tensorrt.build_engine(onnx, spec, cache, tmp_path / "calibration.txt", None)
    second = tensorrt.build_engine(onnx, spec, cache, tmp_path / "calibration.txt", None)
    assert first == second and first.read_bytes() == b"engine" and len(decodes) == 1


@pytest.mark.slow
def test_the_tensorrt_qdq_model_is_symmetric_on_the_real_quantize_static_output(demo_artifacts, parity_cache, tmp_path):
    """TensorRT's ONNX parser refuses a non-zero zero-point. Fails before: cached_int8 had one target, quantize_static's
    defaults (asymmetric activations), and no way to ask for TensorRT's."""
    import onnx
    from onnx import numpy_helper

    from parity.clips import load_clips
    from parity.demo import DEMO_MODEL
    from parity.precision.int8 import cached_int8
    from parity.preprocess import PreprocessConfig

    listing = tmp_path / "calibration.txt"
    listing.write_text("".join(f"{c.path} {c.label}\n" for c in load_clips(demo_artifacts.train_list)[:4]))
    pre = PreprocessConfig.for_size(DEMO_MODEL.num_seg, DEMO_MODEL.size)
    path, record = cached_int8(demo_artifacts.onnx, listing, pre, parity_cache, target="tensorrt")
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    activations = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert len(activations) > 10, "the activations were not quantized"
    for node in activations:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), f"{node.name}: activation zero-point {zero_point}"
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert all(not inits[n.input[2]].any() for n in dequantize if len(n.input) > 2)  # weights symmetric too
    assert not [n for n in dequantize if inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int32]  # no INT32 bias
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    per_channel = [n for n in dequantize if n.output[0] in conv_weights and inits.get(n.input[0]) is not None and inits[n.input[1]].size > 1]
    assert len(per_channel) == len(conv_weights), "Conv weights are not all INT8 per channel"
    assert record["target"] == "tensorrt" and record["extra_options"]["ActivationSymmetric"] is True


# ----------------------------------------------------------------------------- 5. one GPU set; 6. the gate's inputs


def test_the_gpu_set_is_one_cuda12_stack_and_no_hint_says_install_an_extra(monkeypatch):
    """Fails before: onnxruntime-gpu>=1.20 (resolves to 1.31, CUDA 13) with tensorrt-cu12<12 (resolves to 11.4, no
    libnvinfer.so.10 for ORT's TensorRT EP); the hints said pip install 'pptsm-parity[gpu]'."""
    import runpy

    import tomllib
    from paddle import inference

    from parity.backends import gpu

    root = Path(__file__).resolve().parents[1]
    gpu_set = runpy.run_path(str(root / "noxfile.py"))["GPU_SET"]
    loose = [p for p in gpu_set if p.startswith(("onnxruntime", "tensorrt", "paddlepaddle", "polygraphy")) and "==" not in p]
    assert not loose, f"open ranges resolve to whatever is newest: {loose}"
    pins = dict(p.split("==", 1) for p in gpu_set if "==" in p)
    ort = tuple(int(x) for x in pins["onnxruntime-gpu[cuda,cudnn]"].split(".")[:2])
    assert (1, 19) <= ort <= (1, 26), "onnxruntime-gpu: 1.27+ wheels require CUDA 13 (nvidia-*-cu13)"
    assert pins["tensorrt-cu12"].startswith("10."), "ORT 1.2x's TensorRT EP links libnvinfer.so.10"
    assert pins["paddlepaddle-gpu"].startswith("3.") and pins["polygraphy"]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [d for d in extras["gpu"] + extras["trt"] if d.startswith(("onnxruntime", "paddlepaddle"))]

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])  # the CPU wheel's
    reason = gpu.ort_provider_reason("TensorrtExecutionProvider")
    assert "[gpu]" not in reason and "nox -s gpu" in reason
    import paddle

    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: False)
    assert "nox -s gpu" in gpu.paddle_gpu_reason(True) and "[gpu]" not in gpu.paddle_gpu_reason(True)
    # a Paddle built with TensorRT 10 that finds no libnvinfer of that major
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(inference, "get_trt_compile_version", lambda: (10, 5, 0))
    monkeypatch.setattr(inference, "get_trt_runtime_version", lambda: (8, 6, 1))
    assert "built with TensorRT 10.5.0, the TensorRT it loads is 8.6.1" in gpu.paddle_gpu_reason(True)


def test_the_gpu_gate_runs_paddle_trt_on_a_legacy_program_and_calibrates_on_clips_it_does_not_judge():
    """Fails before: nox -s gpu gated the PIR demo model (paddle-trt-* always unavailable) and calibrated on val.txt,
    the clips it judged."""
    from parity.backends.gpu import gate_commands
    from parity.cli import build_parser

    inputs = {"paddle_model": "g/model/pptsm_v2.json", "onnx": "g/model/pptsm_v2.onnx", "clips": "g/clips/val.txt", "calibration": "c/train.txt"}
    runs = [build_parser().parse_args(argv) for argv in gate_commands(inputs, "g/legacy/pptsm_v2.pdmodel")]
    required = [n for r in runs for n in r.require.split(",")]
    assert sorted(required) == sorted(n for n, b in BACKENDS.items() if b.device == "gpu")
    for r in runs:
        assert r.calibration != r.clips
        trt = [n for n in r.require.split(",") if BACKENDS[n].needs_legacy_program]
        assert not trt or r.paddle_model.endswith(".pdmodel")
    assert not [r for r in gate_commands(inputs, "x.pdmodel", ["paddle-trt-fp32", "paddle-trt-fp16"]) if "paddle-trt-fp16" in r]


@pytest.mark.slow
@pytest.mark.parametrize("isolated", [False, True])
def test_a_backends_evidence_reaches_results_json_from_its_own_process(isolated, demo_run_config, parity_cache, monkeypatch, tmp_path):
    """What a GPU runner proves about what ran (`evidence()`) is recorded per backend, also when the runner lives in
    its own process, as GPU backends always do. Fails before: no `evidence` on the record, and nothing crossed the pipe."""
    import json
    import os

    from fixtures.defects import evidence_runner
    from parity.backends import BACKENDS
    from parity.backends.isolated import IsolatedRunner
    from parity.report import write_report
    from parity.run import run

    make = (lambda art: IsolatedRunner("fixtures.defects:evidence_runner", art, name="x")) if isolated else evidence_runner
    monkeypatch.setitem(BACKENDS, "onnxruntime-fp16", dataclasses.replace(BACKENDS["onnxruntime-fp16"], make_runner=make))
    result = run(dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime-fp16"], report=str(tmp_path)), cache=parity_cache)
    write_report(result, tmp_path)
    (record,) = [b for b in json.loads((tmp_path / "results.json").read_text())["backends"] if b["name"] == "onnxruntime-fp16"]
    evidence = record["evidence"]
    assert evidence["engine"] == "simulated" and evidence["calls"] == len(result.clips)  # as of the last clip
    assert (evidence["pid"] != os.getpid()) is isolated
    assert "what ran (evidence)" in (tmp_path / "index.html").read_text() and '"engine": "simulated"' in (tmp_path / "index.html").read_text()
    assert next(b for b in json.loads((tmp_path / "results.json").read_text())["backends"] if b["name"] == "paddle")["evidence"] is None
