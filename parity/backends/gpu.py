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


def ort_trt_providers(fp16: bool, cache_dir: str | None = None, device_id: int = 0) -> tuple[list, list]:
    """TensorRT EP (FP16 when asked), with CUDA as the fallback for nodes TensorRT does not take."""
    trt = {"device_id": device_id, "trt_fp16_enable": bool(fp16)}
    if cache_dir:
        trt.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir, "trt_timing_cache_enable": True})
    providers, options = ort_cuda_providers(device_id)
    return ["TensorrtExecutionProvider", *providers], [trt, *options]


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
                    device_id: int = 0, workspace: int = 1 << 30) -> list[tuple[str, tuple]]:
    """The ``paddle.inference.Config`` calls, in order, for Paddle GPU (and Paddle-TensorRT).

    ``shapes`` is ``{"min": [...], "opt": [...], "max": [...]}`` for the input; ``trt_precision``
    is None (no TensorRT), ``"fp32"`` or ``"fp16"``.
    """
    plan: list[tuple[str, tuple]] = [("enable_use_gpu", (256, device_id)), ("switch_ir_optim", (True,)), ("disable_glog_info", ())]
    if trt_precision is not None:
        max_batch = shapes["max"][0] if shapes else 1
        plan.append(("enable_tensorrt_engine", (workspace, max_batch, 3, ("PrecisionType", "Half" if trt_precision == "fp16" else "Float32"), bool(cache_dir), False)))
        if shapes:
            plan.append(("set_trt_dynamic_shape_info", ({input_name: shapes["min"]}, {input_name: shapes["max"]}, {input_name: shapes["opt"]})))
        if cache_dir:
            plan.append(("set_optim_cache_dir", (cache_dir,)))
    return plan


def apply_plan(config, plan: list[tuple[str, tuple]]):
    """Call each planned method on ``config``; ``("PrecisionType", name)`` becomes the enum member."""
    from paddle import inference

    for method, args in plan:
        args = tuple(getattr(inference.PrecisionType, a[1]) if isinstance(a, tuple) and a and a[0] == "PrecisionType" else a for a in args)
        getattr(config, method)(*args)
    return config
