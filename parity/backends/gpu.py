"""What the GPU backends need from this machine, and the settings they pass to each library.

The settings are built by plain functions (``ort_cuda_providers``, ``paddle_gpu_plan``, …) so
that they can be checked without a GPU; the runners only apply them.
"""
from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess


@functools.lru_cache(maxsize=None)
def gpu_names() -> tuple[str, ...]:
    """Names of the NVIDIA GPUs the driver reports (empty without a driver or GPU)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip()) if out.returncode == 0 else ()


def cuda_device_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "unavailable: no CUDA device (no NVIDIA driver: nvidia-smi not found)"
    if not gpu_names():
        return "unavailable: no CUDA device (nvidia-smi lists no GPU)"
    return None


def _module_reason(*modules: str) -> str | None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"unavailable: {module} not importable"
    return None


# ----------------------------------------------------------------------------- ONNX Runtime GPU


def ort_provider_reason(provider: str) -> str | None:
    reason = _module_reason("onnxruntime")
    if reason:
        return reason
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return f"unavailable: onnxruntime {ort.__version__} has no {provider} (install onnxruntime-gpu: pip install 'pptsm-parity[gpu]')"
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


def trt_share_problem(profile: list[dict]) -> str | None:
    """None when TensorRT ran every node; else which nodes ran elsewhere."""
    nodes = node_providers(profile)
    elsewhere = sorted(n for n, p in nodes.items() if p != "TensorrtExecutionProvider")
    if not nodes or not elsewhere:
        return None
    share = 1 - len(elsewhere) / len(nodes)
    return (f"TensorRT ran {share:.0%} of the nodes; {len(elsewhere)} ran elsewhere ({', '.join(elsewhere[:5])}"
            f"{' ...' if len(elsewhere) > 5 else ''}): not a TensorRT result (pass --allow-trt-fallback to accept it)")


# Environment a GPU backend's own process gets before anything is imported (overriding inherited values).
TF32_OFF = ("paddle-gpu", "paddle-trt-fp32")


def backend_environment(name: str) -> dict[str, str]:
    """Paddle Inference has no TF32 switch: NVIDIA's override keeps cuBLAS/cuDNN in FP32 for its FP32 GPU backends."""
    return {"NVIDIA_TF32_OVERRIDE": "0"} if name in TF32_OFF else {}


def gate_arguments(exclude: list[str] | None = None) -> list[str]:
    """``parity run`` arguments that make a GPU gate fail (exit 2), not skip, when any GPU backend did not run."""
    from . import BACKENDS

    names = [n for n, b in BACKENDS.items() if b.device == "gpu" and n not in (exclude or [])]
    return ["--backends", ",".join(["paddle", *names]), "--require", ",".join(names)]


# ----------------------------------------------------------------------------- Paddle Inference GPU


def paddle_gpu_reason(with_trt: bool) -> str | None:
    reason = _module_reason("paddle")
    if reason:
        return reason
    import paddle

    if not paddle.is_compiled_with_cuda():
        return f"unavailable: paddlepaddle {paddle.__version__} is a CPU build (install paddlepaddle-gpu: pip install 'pptsm-parity[gpu]')"
    if with_trt:
        from paddle import inference

        if tuple(inference.get_trt_compile_version()) == (0, 0, 0):
            return "unavailable: paddlepaddle-gpu was built without TensorRT"
    return cuda_device_reason()


def paddle_gpu_plan(input_name: str, shapes: dict | None, trt_precision: str | None, cache_dir: str | None = None,
                    device_id: int = 0, workspace: int = 1 << 30, tuned_shapes: str | None = None) -> list[tuple[str, tuple]]:
    """The ``paddle.inference.Config`` calls, in order, for Paddle GPU (and Paddle-TensorRT).

    ``shapes`` is ``{"min": [...], "opt": [...], "max": [...]}`` for the input; ``trt_precision``
    is None (no TensorRT), ``"fp32"`` or ``"fp16"``.
    """
    plan: list[tuple[str, tuple]] = [("enable_use_gpu", (256, device_id)), ("switch_ir_optim", (True,)), ("disable_glog_info", ())]
    if trt_precision is not None:
        max_batch = shapes["max"][0] if shapes else 1
        plan.append(("enable_tensorrt_engine", (workspace, max_batch, 3, ("PrecisionType", "Half" if trt_precision == "fp16" else "Float32"), bool(cache_dir), False)))
        if tuned_shapes:
            # every TensorRT subgraph input's range (around the N*T reshape and temporal_shift), collected on the model
            plan.append(("enable_tuned_tensorrt_dynamic_shape", (tuned_shapes, True)))
        elif shapes:
            plan.append(("set_trt_dynamic_shape_info", ({input_name: shapes["min"]}, {input_name: shapes["max"]}, {input_name: shapes["opt"]})))
        if cache_dir:
            plan.append(("set_optim_cache_dir", (cache_dir,)))
    return plan


def shape_collection_plan(shape_file: str, device_id: int = 0) -> list[tuple[str, tuple]]:
    """Paddle's own answer to subgraph shape ranges: run once with ``collect_shape_range_info``."""
    return [("enable_use_gpu", (256, device_id)), ("switch_ir_optim", (True,)), ("disable_glog_info", ()), ("collect_shape_range_info", (shape_file,))]


def collect_tuned_shapes(art, cache_dir: str) -> str:
    """Run the model at its smallest and largest batch with shape collection on; returns the shape file."""
    import os

    import numpy as np
    from paddle import inference

    shape_file = os.path.join(cache_dir, "shape_range.pbtxt")
    if os.path.isfile(shape_file):
        return shape_file
    os.makedirs(cache_dir, exist_ok=True)
    config = apply_plan(inference.Config(str(art.paddle_model.model_file), str(art.paddle_model.params_file)), shape_collection_plan(shape_file))
    predictor = inference.create_predictor(config)
    shapes = art.input_shapes()
    for shape in (shapes["min"], shapes["max"]):
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(shape))
        handle.copy_from_cpu(np.zeros(shape, np.float32))
        predictor.run()
    return shape_file


def trt_engines_built(cache_dir: str) -> bool:
    """Whether Paddle-TRT serialized any TensorRT engine (``_opt_cache/trt_serialized_*``) under ``cache_dir``."""
    import os

    for _, _, files in os.walk(cache_dir):
        if any(f.startswith("trt_serialized") for f in files):
            return True
    return False


def apply_plan(config, plan: list[tuple[str, tuple]]):
    """Call each planned method on ``config``; ``("PrecisionType", name)`` becomes the enum member."""
    from paddle import inference

    for method, args in plan:
        args = tuple(getattr(inference.PrecisionType, a[1]) if isinstance(a, tuple) and a and a[0] == "PrecisionType" else a for a in args)
        getattr(config, method)(*args)
    return config
