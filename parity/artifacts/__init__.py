"""Building the artifacts a run compares: export -> ONNX (paddle2onnx) -> FP16 ONNX, content-hash cached.

- ``cache``: ``ArtifactCache`` and the sha256 helpers that key it;
- ``paddle_model``: exported Paddle models (``.json`` PIR / ``.pdmodel``), their input, ``export_inference_model``;
- ``convert``: paddle2onnx in a subprocess, the review it is given (``parity.diagnose.lint.review``), ONNX checker + ONNX Runtime;
- ``onnx_graph``: an ONNX graph's constants and inner tensors; ``ort``: the one way an ONNX Runtime session is built;
- ``model_files``: the input and classes the model files declare;
- ``fp16``: the FP16 ONNX model.

Training lives in ``parity.train``; TensorRT engines are built by their backend.
"""
from .cache import ArtifactCache, default_cache_dir, sha256_file, sha256_json
from .convert import ConversionRecord, convert_to_onnx
from .fp16 import cached_fp16, convert_to_fp16
from .ort import ort_load_error
from .paddle_model import PaddleModel, export_inference_model

__all__ = [
    "ArtifactCache", "ConversionRecord", "PaddleModel", "cached_fp16", "convert_to_fp16", "convert_to_onnx", "default_cache_dir",
    "export_inference_model", "ort_load_error", "sha256_file", "sha256_json",
]
