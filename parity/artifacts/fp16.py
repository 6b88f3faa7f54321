"""FP16 ONNX models (onnxconverter-common), cached by the FP32 model's content hash."""
from __future__ import annotations

from pathlib import Path

from ..optional import lazy
from .cache import ArtifactCache, sha256_file

onnx = lazy("onnx")
float16 = lazy("onnxconverter_common.float16")


def convert_to_fp16(onnx_path: str | Path, out: str | Path) -> Path:
    """Float16 weights and activations, float32 inputs and outputs (onnxconverter-common)."""
    model = onnx.load(str(onnx_path))
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(fp16, str(out))
    return out


def cached_fp16(onnx_path: str | Path, cache: ArtifactCache) -> Path:
    """The FP16 model of ``onnx_path``, built once per content hash."""
    src = Path(onnx_path)
    folder = cache.get_or_build(
        "fp16-onnx",
        {"onnx_sha256": sha256_file(src), "tool": "onnxconverter_common.float16", "keep_io_types": True},
        lambda d: convert_to_fp16(src, d / "model.fp16.onnx"),
        code=("parity.artifacts.fp16",),
    )
    return folder / "model.fp16.onnx"
