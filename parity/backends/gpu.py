"""What the GPU backends need from this machine, and the settings they pass to each library.

The settings are built by plain functions (``ort_cuda_providers``, ``paddle_gpu_plan``, …) so
that they can be checked without a GPU; the runners only apply them.

Engine caches (Paddle-TRT's ``optim_cache_dir``, the TRT EP's ``trt_engine_cache_path``) are a folder
per content key (``engine_key``): neither library keys its engines by the weights, so a shared folder
would hand one model's engines to another with the same tensor names. Which engine files a run built or
found recorded under its key is its evidence (``engine_evidence``, engine_cache.py); any other file is not.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import importlib.metadata
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from polygraphy.backend.onnxrt import OnnxrtRunner

from ..artifacts import sha256_file, sha256_json
from ..artifacts.cache import code_hash
from ..artifacts.ort import session
from ..optional import lazy, missing
from .engine_cache import ORT_TRT_ENGINES, PADDLE_TRT_ENGINES, engine_evidence, engine_files
from .onnxrt import ort_runner
from .paddle_inference import PaddleInferenceRunner
from .registry import BACKENDS

ort = lazy("onnxruntime")
paddle = lazy("paddle")
inference = lazy("paddle.inference")

# The harness code that builds and checks engines: its hash is part of every engine key.
ENGINE_CODE = ("parity.backends.gpu", "parity.backends.engine_cache", "parity.backends.tensorrt", "parity.backends.paddle_inference", "parity.precision.int8")
INSTALL_HINT = "install the GPU set: `nox -s gpu`, or the pins in the README's GPU section"


@functools.lru_cache(maxsize=None)
def _smi_rows() -> tuple[tuple[str, ...], ...]:
    """nvidia-smi's GPUs, as [index, uuid, name, compute_cap] rows (PCI bus order; all of them, whatever CUDA_VISIBLE_DEVICES says)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    for fields in ("index,uuid,name,compute_cap", "index,uuid,name"):  # drivers before 510 have no compute_cap field
        try:
            out = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return ()
        if out.returncode == 0:
            rows = [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
            return tuple(tuple(r + [""] * (4 - len(r))) for r in rows)
    return ()


def visible_rows(rows, visible: str | None) -> list:
    """The rows CUDA_VISIBLE_DEVICES leaves, in its order: indices or (prefixes of) UUIDs; as CUDA does,
    the list stops at the first entry that names no device. Unset: every row."""
    if visible is None:
        return list(rows)
    out = []
    for token in (t.strip() for t in visible.split(",")):
        match = [r for r in rows if (token.isdigit() and r[0] == token) or (token and not token.isdigit() and r[1].startswith(token))]
        if len(match) != 1 or match[0] in out:
            break
        out.append(match[0])
    return out


def gpu_names() -> tuple[str, ...]:
    """Names of the GPUs this process can use: nvidia-smi's list narrowed by CUDA_VISIBLE_DEVICES (empty without a GPU)."""
    return tuple(r[2] for r in visible_rows(_smi_rows(), os.environ.get("CUDA_VISIBLE_DEVICES")) if len(r) > 2)


def _libcuda():
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device(ordinal: int = 0, lib=None) -> dict | None:
    """The device a CUDA library in this process gets as ``ordinal``: {"name", "compute_capability"}, or None.

    Asked of the driver API (``cuDeviceGet``/``cuDeviceGetName``/``cuDeviceGetAttribute``), so it honours
    CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER exactly as TensorRT, ORT and Paddle do. Without the driver
    library, nvidia-smi's list narrowed by CUDA_VISIBLE_DEVICES.
    """
    lib = lib if lib is not None else _libcuda()
    if lib is None:
        rows = visible_rows(_smi_rows(), os.environ.get("CUDA_VISIBLE_DEVICES"))
        if len(rows) <= ordinal or len(rows[ordinal]) < 4:
            return None
        return {"name": rows[ordinal][2], "compute_capability": rows[ordinal][3], "source": "nvidia-smi"}
    if lib.cuInit(0) != 0:
        return None
    device = ctypes.c_int()
    if lib.cuDeviceGet(ctypes.byref(device), ordinal) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if (lib.cuDeviceGetName(name, 256, device) != 0 or lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device) != 0
            or lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device) != 0):  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR
        return None
    return {"name": name.value.decode(errors="replace"), "compute_capability": f"{major.value}.{minor.value}", "source": "cuda-driver"}


def cuda_device_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "unavailable: no CUDA device (no NVIDIA driver: nvidia-smi not found)"
    rows = _smi_rows()
    if not rows:
        return "unavailable: no CUDA device (nvidia-smi lists no GPU)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible_rows(rows, visible):
        return f"unavailable: no CUDA device (CUDA_VISIBLE_DEVICES={visible!r} hides all {len(rows)} GPU(s) nvidia-smi lists)"
    return None


def _module_reason(*modules: str) -> str | None:
    reason = missing(*modules)
    return reason and f"unavailable: {reason}"


# ----------------------------------------------------------------------------- engine caches keyed by content


def _dist_version(*names: str) -> str:
    for name in names:
        try:
            return f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def library_versions() -> dict:
    """The installed TensorRT, Polygraphy, ONNX Runtime and Paddle (their distributions: GPU wheels first)."""
    return {
        "tensorrt": _dist_version("tensorrt-cu12", "tensorrt-cu13", "tensorrt", "tensorrt-cu11"),
        "polygraphy": _dist_version("polygraphy"),
        "onnxruntime": _dist_version("onnxruntime-gpu", "onnxruntime"),
        "paddle": _dist_version("paddlepaddle-gpu", "paddlepaddle"),
    }


def engine_key(model_files, precision: str, calibration: str = "", tf32: bool | str = False, device: dict | None = None,
               versions: dict | None = None) -> dict:
    """What an engine depends on: the model files' content, precision, calibration set, libraries, GPU, TF32 and our code."""
    device = device if device is not None else cuda_device()
    return {
        "model_sha256": [sha256_file(f) for f in model_files],
        "precision": precision,
        "calibration_sha256": calibration,
        "versions": versions if versions is not None else library_versions(),
        "gpu": {k: device[k] for k in ("name", "compute_capability")} if device else None,
        "tf32": tf32,
        "code": code_hash(*ENGINE_CODE),
    }


def keyed_engine_dir(root: str | Path, stage: str, key: dict) -> Path:
    """The folder of ``stage`` for this key (``ROOT/STAGE/KEY``), with the key beside the engines."""
    folder = Path(root) / stage / sha256_json(key)[:20]
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "key.json").is_file():
        (folder / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True))
    return folder


def trt_engines_built(cache_dir: str, before: dict[str, str] | None = None, patterns: tuple[str, ...] = PADDLE_TRT_ENGINES) -> bool:
    """Whether TensorRT engines under ``cache_dir`` were built in this run or recorded for its key (see ``engine_evidence``)."""
    evidence = engine_evidence(cache_dir, patterns, before)
    return bool(evidence["built"] or evidence["loaded"])


# ----------------------------------------------------------------------------- ONNX Runtime GPU


def ort_provider_reason(provider: str) -> str | None:
    reason = _module_reason("onnxruntime")
    if reason:
        return reason
    if provider not in ort.get_available_providers():
        return f"unavailable: onnxruntime {ort.__version__} has no {provider} ({INSTALL_HINT})"
    return cuda_device_reason()


def ort_cuda_providers(device_id: int = 0) -> tuple[list, list]:
    """CUDA EP with TF32 off, so FP32 comparisons stay FP32."""
    return ["CUDAExecutionProvider"], [{"device_id": device_id, "use_tf32": 0}]


def ort_trt_providers(fp16: bool, cache_dir: str | None = None, device_id: int = 0, allow_fallback: bool = False) -> tuple[list, list]:
    """TensorRT EP (FP16 when asked). ORT hands any node TensorRT rejects to the next provider without a word,
    so by default TensorRT is the only one: with CPU fallback disabled too (``session_config``), a node TensorRT
    does not take stops the session. ``allow_fallback`` keeps CUDA as the fallback."""
    trt = {"device_id": device_id, "trt_fp16_enable": bool(fp16)}
    if cache_dir:
        trt.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir, "trt_timing_cache_enable": True})
    if not allow_fallback:
        return ["TensorrtExecutionProvider"], [trt]
    providers, options = ort_cuda_providers(device_id)
    return ["TensorrtExecutionProvider", *providers], [trt, *options]


def node_providers(profile: list[dict]) -> dict[str, str]:
    """Which provider ran each node, from ONNX Runtime's profiling events (``SessionOptions.enable_profiling``)."""
    out = {}
    for event in profile:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            out[event.get("name", "").rsplit("_kernel_time", 1)[0]] = args["provider"]
    return out


TRT_EP = "TensorrtExecutionProvider"


def trt_share(profile: list[dict]) -> dict:
    """How much of the model TensorRT ran, from a profiled run's events: each TensorRT subgraph is one fused node
    (``TensorrtExecutionProvider_TRTKernel_graph_*``), every node it did not take is its own, so ``share`` (TensorRT
    nodes over all nodes) is a lower bound of the work it did, and 0 means it ran nothing."""
    nodes = node_providers(profile)
    trt = sorted(n for n, p in nodes.items() if p == TRT_EP)
    elsewhere = sorted(n for n, p in nodes.items() if p != TRT_EP)
    return {"nodes": len(nodes), "tensorrt_nodes": len(trt), "share": (len(trt) / len(nodes)) if nodes else None,
            "elsewhere": {n: nodes[n] for n in elsewhere}}


def trt_share_problem(profile: list[dict]) -> str | None:
    """None when TensorRT ran every node; else which nodes ran elsewhere."""
    share = trt_share(profile)
    elsewhere = sorted(share["elsewhere"])
    if not share["nodes"] or not elsewhere:
        return None
    return (f"TensorRT ran {share['share']:.0%} of the nodes; {len(elsewhere)} ran elsewhere ({', '.join(elsewhere[:5])}"
            f"{' ...' if len(elsewhere) > 5 else ''}): not a TensorRT result (pass --allow-trt-fallback to accept it)")


def trt_share_error(share: dict, allow_fallback: bool) -> str | None:
    """Why a profiled TRT EP run is not a TensorRT result, or None. With ``allow_fallback`` other providers may run
    nodes, but TensorRT must run some: a share of 0 is the whole model on CUDA, judged at TensorRT's tolerance."""
    if not share["nodes"]:
        return "ONNX Runtime's profile shows no node run: cannot tell whether TensorRT ran anything"
    if not share["tensorrt_nodes"]:
        return (f"TensorRT ran none of the model's {share['nodes']} nodes (all on {', '.join(sorted(set(share['elsewhere'].values())))}): "
                "not a TensorRT result, even with --allow-trt-fallback")
    if share["elsewhere"] and not allow_fallback:
        names = sorted(share["elsewhere"])
        return (f"TensorRT ran {share['share']:.0%} of the nodes; {len(names)} ran elsewhere ({', '.join(names[:5])}"
                f"{' ...' if len(names) > 5 else ''}): not a TensorRT result (pass --allow-trt-fallback to accept it)")
    return None


def _undecorated(method):
    """A Polygraphy runner method without its ``check_called_by`` wrapper (which warns when a subclass calls it)."""
    return getattr(method, "__wrapped__", method)


def trt_ep_session_loader(model, providers: list, provider_options: list, require_trt: bool, profile_prefix: str, threads: int | None = None):
    """``onnxruntime.InferenceSession`` for the TRT EP, profiled (its first run's profile says where each node ran)."""

    def load():
        src = model() if callable(model) else model
        # a node TensorRT does not take must not run quietly on the CPU either
        config = {"session.disable_cpu_ep_fallback": "1"} if require_trt else None
        return session(str(src), providers, threads, provider_options, config, profile_prefix, strict=True)

    return load


def trt_ep_runner(model, name: str, cache_dir: str, providers: list, options: list, allow_fallback: bool, threads: int | None = None):
    """Polygraphy's OnnxrtRunner over a profiled TRT EP session: after the first inference the profile is read,
    the share of nodes TensorRT ran checked (``trt_share_error``) and kept, with the engine files, as ``evidence()``."""
    class TrtEpRunner(OnnxrtRunner):
        def activate_impl(self):
            self._before = engine_files(cache_dir, ORT_TRT_ENGINES)
            self._evidence = None
            _undecorated(OnnxrtRunner.activate_impl)(self)

        def infer_impl(self, feed_dict):
            outputs = _undecorated(OnnxrtRunner.infer_impl)(self, feed_dict)
            if self._evidence is None:
                path = self.sess.end_profiling()
                if not path or not Path(path).is_file():
                    raise RuntimeError("ONNX Runtime wrote no profile for the first run: cannot tell whether TensorRT ran anything")
                try:
                    events = json.loads(Path(path).read_text())
                finally:
                    Path(path).unlink(missing_ok=True)
                share = trt_share(events)
                self._evidence = {"kind": "ort-trt-ep", "allow_fallback": allow_fallback, "trt_share": share,
                                  "engines": engine_evidence(cache_dir, ORT_TRT_ENGINES, self._before)}
                problem = trt_share_error(share, allow_fallback)
                if problem:
                    raise RuntimeError(problem)
            return outputs

        def evidence(self) -> dict | None:
            return self._evidence

    prefix = os.path.join(tempfile.gettempdir(), f"parity-{name}-{os.getpid()}")
    runner = TrtEpRunner(trt_ep_session_loader(model, providers, options, not allow_fallback, prefix, threads), name=name)
    runner.cache_dir, runner.profile_prefix = cache_dir, prefix
    return runner


def ort_gpu_runner(art, trt_fp16: bool | None, name: str):
    """``onnxruntime-cuda`` (``trt_fp16`` None) or the TRT EP, its engines in a folder of their own content key."""
    if trt_fp16 is None:
        providers, options = ort_cuda_providers()
        return ort_runner(art.onnx, name, art.threads, providers, options)
    key = engine_key([art.onnx], "fp16" if trt_fp16 else "fp32", tf32="tensorrt-default")  # the TRT EP has no TF32 option
    key["backend"] = name
    cache_dir = str(keyed_engine_dir(art.cache.root, "ort-trt", key))
    providers, options = ort_trt_providers(trt_fp16, cache_dir, allow_fallback=art.allow_trt_fallback)
    return trt_ep_runner(art.onnx, name, cache_dir, providers, options, art.allow_trt_fallback, art.threads)


# Paddle 3.3's Config has no TF32 switch, and its TensorRT engine (tensorrt/engine.cc, FreezeNetwork) never clears
# BuilderFlag.TF32, which TensorRT turns on by default: paddle-trt-fp32 is FP32 only through NVIDIA_TF32_OVERRIDE=0,
# which cuBLAS, cuDNN and the TensorRT builder honour. Its evidence says so (PADDLE_TF32).
PADDLE_TF32 = "off through NVIDIA_TF32_OVERRIDE=0 in the backend's process (Paddle 3 has no TF32 switch of its own)"


def backend_environment(name: str) -> dict[str, str]:
    """The environment a GPU backend's own process gets before anything is imported (overriding inherited values).

    Paddle Inference has no TF32 switch: NVIDIA's override keeps cuBLAS/cuDNN and TensorRT's builder in FP32 for its FP32 GPU
    backends (those marked ``tf32_off``)."""
    return {"NVIDIA_TF32_OVERRIDE": "0"} if name in BACKENDS and BACKENDS[name].tf32_off else {}


# ----------------------------------------------------------------------------- the GPU gate (`nox -s gpu`)

# Paddle 3.3 cannot write a legacy program of the demo (with FLAGS_enable_pir_api=0 its dy2static hands a Variable to
# the PIR-only sigmoid of the LTA block), and Paddle-TRT takes only legacy programs: the GPU session exports one under
# Paddle 2.6.2 in a side environment, from the same trained weights. Arguments: the trained folder, the output prefix.
LEGACY_EXPORT = """
import sys
from pathlib import Path
from parity.demo import load_trained
from parity.artifacts.paddle_model import export_inference_model
model, spec = load_trained(Path(sys.argv[1]))
print(export_inference_model(model, spec.num_seg, spec.size, sys.argv[2]).model_file)
"""
LEGACY_PADDLE = ("paddlepaddle==2.6.2", "numpy<2", "polygraphy", "pillow", "tqdm", "pyyaml")


def gate_commands(inputs: dict[str, str], legacy_model: str, exclude: list[str] | None = None, report: str = "reports/gpu") -> list[list[str]]:
    """The ``parity run`` argument lists of the GPU gate: every GPU backend required. Paddle-TRT runs on the legacy
    ``.pdmodel`` export (its reference: ``paddle`` on that program); the rest on the PIR export and its ONNX model.
    INT8 is calibrated on the train clips, judged on the val clips."""
    exclude = list(exclude or [])
    legacy = [n for n, b in BACKENDS.items() if b.needs_legacy_program]
    trt_paddle = [n for n in legacy if n not in exclude]
    main = gate_arguments(exclude=exclude + legacy)
    common = ["--onnx", inputs["onnx"], "--clips", inputs["clips"], "--calibration", inputs["calibration"]]
    runs = [["run", "--paddle-model", inputs["paddle_model"], *common, *main, "--report", f"{report}/main"]]
    if trt_paddle:
        runs.append(["run", "--paddle-model", legacy_model, *common, "--backends", ",".join(["paddle", *trt_paddle]),
                     "--require", ",".join(trt_paddle), "--report", f"{report}/paddle-trt"])
    return runs


def gate_arguments(exclude: list[str] | None = None) -> list[str]:
    """``parity run`` arguments that make a GPU gate fail (exit 2), not skip, when any GPU backend did not run."""
    names = [n for n, b in BACKENDS.items() if b.device == "gpu" and n not in (exclude or [])]
    return ["--backends", ",".join(["paddle", *names]), "--require", ",".join(names)]


# ----------------------------------------------------------------------------- Paddle Inference GPU


def paddle_gpu_reason(with_trt: bool) -> str | None:
    reason = _module_reason("paddle")
    if reason:
        return reason
    if not paddle.is_compiled_with_cuda():
        return f"unavailable: paddlepaddle {paddle.__version__} is a CPU build ({INSTALL_HINT})"
    if with_trt:
        compiled = tuple(inference.get_trt_compile_version())
        if compiled == (0, 0, 0):
            return "unavailable: paddlepaddle-gpu was built without TensorRT"
        try:
            runtime = tuple(inference.get_trt_runtime_version())
        except Exception:  # no libnvinfer to load
            runtime = (0, 0, 0)
        if runtime[0] != compiled[0]:
            found = ".".join(map(str, runtime)) if runtime != (0, 0, 0) else "none"
            return (f"unavailable: paddlepaddle-gpu was built with TensorRT {'.'.join(map(str, compiled))}, the TensorRT it loads is {found} "
                    f"({INSTALL_HINT})")
    return cuda_device_reason()


def paddle_gpu_plan(profiles: dict | None, trt_precision: str | None, cache_dir: str | None = None,
                    device_id: int = 0, workspace: int = 1 << 30, tuned_shapes: str | None = None) -> list[tuple[str, tuple]]:
    """The ``paddle.inference.Config`` calls, in order, for Paddle GPU (and Paddle-TensorRT).

    ``profiles`` is ``{input name: (min, opt, max)}`` for every model input (``ModelArtifacts.profiles``: SlowFast has
    two); ``trt_precision`` is None (no TensorRT), ``"fp32"`` or ``"fp16"``.
    """
    plan: list[tuple[str, tuple]] = [("enable_use_gpu", (256, device_id)), ("switch_ir_optim", (True,)), ("disable_glog_info", ())]
    if trt_precision is not None:
        max_batch = max((int(p[2][0]) for p in profiles.values()), default=1) if profiles else 1
        plan.append(("enable_tensorrt_engine", (workspace, max_batch, 3, ("PrecisionType", "Half" if trt_precision == "fp16" else "Float32"), bool(cache_dir), False)))
        if tuned_shapes:
            # every TensorRT subgraph input's range (around the N*T reshape and temporal_shift), collected on the model
            plan.append(("enable_tuned_tensorrt_dynamic_shape", (tuned_shapes, True)))
        elif profiles:
            plan.append(("set_trt_dynamic_shape_info", tuple({name: list(p[i]) for name, p in profiles.items()} for i in (0, 2, 1))))
        if cache_dir:
            plan.append(("set_optim_cache_dir", (cache_dir,)))
    return plan


def shape_collection_plan(shape_file: str, device_id: int = 0) -> list[tuple[str, tuple]]:
    """Paddle's own answer to subgraph shape ranges: run once with ``collect_shape_range_info``."""
    return [("enable_use_gpu", (256, device_id)), ("switch_ir_optim", (True,)), ("disable_glog_info", ()), ("collect_shape_range_info", (shape_file,))]


def collect_tuned_shapes(art, cache_dir: str) -> str:
    """Run the model at its smallest and largest batch with shape collection on; returns the shape file."""
    shape_file = os.path.join(cache_dir, "shape_range.pbtxt")
    if os.path.isfile(shape_file):
        return shape_file
    os.makedirs(cache_dir, exist_ok=True)
    partial = shape_file + f".{os.getpid()}.partial"
    config = apply_plan(inference.Config(str(art.paddle_model.model_file), str(art.paddle_model.params_file)), shape_collection_plan(partial))
    predictor = inference.create_predictor(config)
    profiles = art.profiles()
    for end in (0, 2):  # the smallest, then the largest shape of every input (a model missing one does not run)
        for name, profile in profiles.items():
            handle = predictor.get_input_handle(name)
            handle.reshape(list(profile[end]))
            handle.copy_from_cpu(np.zeros(profile[end], np.float32))
        predictor.run()
    del handle, predictor  # Paddle writes the shape file when the predictor goes
    gc.collect()
    if not os.path.isfile(partial):
        raise RuntimeError(f"Paddle wrote no shape-range file ({partial}) after collect_shape_range_info")
    os.replace(partial, shape_file)
    return shape_file


def paddle_gpu_runner(art, trt_precision: str | None, name: str):
    """``paddle-gpu``, or Paddle-TRT with its engines and shape-range file in a folder of their own content key."""
    # TF32 stays off through NVIDIA_TF32_OVERRIDE=0, set by the isolated worker before paddle is imported
    # (GPU backends always run in their own process): see backend_environment.
    cache_dir = None
    if trt_precision:
        model = art.paddle_model
        key = engine_key([model.model_file, model.params_file], trt_precision, tf32=False if trt_precision == "fp32" else "tensorrt-default")
        key.update(backend=name, shapes={n: [list(x) for x in p] for n, p in art.profiles().items()})  # every input's range
        cache_dir = str(keyed_engine_dir(art.cache.root, "paddle-trt", key))

    def config():
        base = inference.Config(str(art.paddle_model.model_file), str(art.paddle_model.params_file))
        tuned = collect_tuned_shapes(art, cache_dir) if trt_precision else None
        return apply_plan(base, paddle_gpu_plan(art.profiles(), trt_precision, cache_dir, tuned_shapes=tuned))

    notes = {"tf32": PADDLE_TF32} if name in BACKENDS and BACKENDS[name].tf32_off else {}
    return PaddleInferenceRunner(art.paddle_model, config_factory=config, name=name, trt_cache_dir=cache_dir, notes=notes)


def apply_plan(config, plan: list[tuple[str, tuple]]):
    """Call each planned method on ``config``; ``("PrecisionType", name)`` becomes the enum member."""
    for method, args in plan:
        args = tuple(getattr(inference.PrecisionType, a[1]) if isinstance(a, tuple) and a and a[0] == "PrecisionType" else a for a in args)
        getattr(config, method)(*args)
    return config
