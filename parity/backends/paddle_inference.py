"""Paddle Inference as a Polygraphy runner."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from ..artifacts import PaddleModel, sha256_file
from ..machine import cpu_features
from ..native import captured_output
from ..optional import lazy
from .engine_cache import PADDLE_TRT_ENGINES, engine_evidence, engine_files

inference = lazy("paddle.inference")

# CPU modes, measured on PP-TSMv2 16x224 and PP-TSM v1 8x224 (benchmarks/paddle_configs.py, 2 cores):
# - "native": oneDNN off, IR optimization off. The program as exported; ignores most of the thread count.
# - "onednn": oneDNN on, IR optimization off. 4.2x faster than native on PP-TSMv2, within 1e-5 of it. On a
#   PIR (.json) program Paddle 3.3 still applies its oneDNN fuse passes here, and conv_activation_onednn_fuse_pass
#   segfaults on PP-TSM v1's conv + leaky_relu.
# - "onednn-nofuse": "onednn" without that pass: runs PP-TSM v1 (1.4x faster than native), agrees within fp32 tolerances.
# - "onednn-ir": IR optimization on as well: Paddle's deployed default (the paddle-onednn backend).
CPU_MODES = ("native", "onednn", "onednn-nofuse", "onednn-ir")
CRASHING_FUSE_PASS = "conv_activation_onednn_fuse_pass"


def make_config(model: PaddleModel, threads: int | None = None, mode: str = "native"):
    """A CPU ``paddle.inference.Config`` for ``model`` in one of ``CPU_MODES``."""
    config = inference.Config(str(model.model_file), str(model.params_file))
    config.disable_gpu()
    config.disable_glog_info()
    if mode == "native":
        config.disable_mkldnn()
    else:
        config.enable_mkldnn()
    config.switch_ir_optim(mode == "onednn-ir")
    if mode == "onednn-nofuse":
        config.delete_pass(CRASHING_FUSE_PASS)
    if threads:
        config.set_cpu_math_library_num_threads(threads)
    return config


_PROBE = """
import sys
import numpy as np
from paddle import inference
from parity.artifacts import PaddleModel
from parity.backends.paddle_inference import make_config
model = PaddleModel.locate(sys.argv[1])
predictor = inference.create_predictor(make_config(model, 1, sys.argv[2]))
for name, dims in model.inputs():  # every input (SlowFast has two): a model missing one fails to run in any mode
    shape = [1] + [d if d > 0 else 224 for d in dims[1:]]
    handle = predictor.get_input_handle(name)
    handle.reshape(shape)
    handle.copy_from_cpu(np.zeros(shape, dtype=np.float32))
predictor.run()
"""


def fast_cpu_mode(model: PaddleModel, cache) -> str:
    """The fastest CPU mode that runs ``model`` without crashing: "onednn", else "onednn-nofuse", else "native".

    Each candidate is tried once in a child process (a segfault there costs nothing) on zero inputs, every input of the
    model; the answer is cached by the model's content hash, the Paddle version and the CPU's instruction sets (oneDNN
    picks its kernels, and its fusions' crashes, by them).
    """
    def probe(folder: Path) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])), "GLOG_minloglevel": "3"}
        tried = {}
        for mode in ("onednn", "onednn-nofuse"):
            proc = subprocess.run([sys.executable, "-c", _PROBE, str(model.model_file), mode], capture_output=True, text=True, env=env)
            tried[mode] = proc.returncode
            if proc.returncode == 0:
                break
        chosen = next((m for m, code in tried.items() if code == 0), "native")
        (folder / "mode.json").write_text(json.dumps({"mode": chosen, "tried": tried}))

    key = {"model": sha256_file(model.model_file), "params": sha256_file(model.params_file),
           "paddle": importlib.metadata.version("paddlepaddle"), "modes": CPU_MODES, "cpu": cpu_features()}
    folder = cache.get_or_build("paddle-cpu-mode", key, probe, code=("parity.backends.paddle_inference",))
    return json.loads((folder / "mode.json").read_text())["mode"]


class PaddleInferenceRunner(BaseRunner):
    """Runs an exported Paddle inference model through ``paddle.inference`` predictors."""

    def __init__(self, model: PaddleModel, threads: int | None = None, config_factory=None, name=None, mode: str = "native",
                 trt_cache_dir: str | None = None, notes: dict | None = None):
        super().__init__(name=name, prefix="paddle-runner")
        self.model = model
        self.threads = threads
        self.trt_cache_dir = trt_cache_dir  # Paddle-TRT: its key's folder, where its engines must appear
        self.notes = notes or {}
        self._config_factory = config_factory or (lambda: make_config(model, threads, mode))
        self._evidence = None

    def activate_impl(self):
        self._before = None
        if self.trt_cache_dir is not None:  # what is there before Paddle starts: none of it was built by this run
            self._before = engine_files(self.trt_cache_dir, PADDLE_TRT_ENGINES)
        with captured_output():  # Paddle's analysis passes print to stdout
            self.predictor = inference.create_predictor(self._config_factory())
        self._warmed_up = False
        self._engines_checked = self.trt_cache_dir is None

    def evidence(self) -> dict | None:
        """What proves this backend ran as it says (Paddle-TRT: the engine files its key built or recorded; the TF32
        note of the FP32 GPU backends), for results.json. None for the CPU backends."""
        return self._evidence or (dict(self.notes) if self.notes else None)

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for name in self.predictor.get_input_names():
            meta.add(name, dtype=np.dtype("float32"), shape=self.predictor.get_input_handle(name).shape())
        return meta

    def infer_impl(self, feed_dict):
        for name, array in feed_dict.items():
            handle = self.predictor.get_input_handle(name)
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        if not self._warmed_up:  # the first run prints oneDNN pass notes; keep them off the terminal
            with captured_output():
                self.predictor.run()
            self._warmed_up = True
        if not self._engines_checked:  # Paddle-TRT builds its engines by the first run: none means no TensorRT ran
            engines = engine_evidence(self.trt_cache_dir, PADDLE_TRT_ENGINES, self._before)
            self._evidence = {"kind": "paddle-trt", "engines": engines, **self.notes}
            if not engines["built"] and not engines["loaded"]:
                stray = f"; {len(engines['stray'])} engine file(s) there were not built under this key" if engines["stray"] else ""
                raise RuntimeError(f"Paddle-TRT built no TensorRT engine under its key ({self.trt_cache_dir}{stray}): it ran as plain Paddle GPU")
            self._engines_checked = True
        start = time.perf_counter()
        self.predictor.run()
        end = time.perf_counter()
        outputs = OrderedDict(
            (name, self.predictor.get_output_handle(name).copy_to_cpu()) for name in self.predictor.get_output_names()
        )
        self.inference_time = end - start
        return outputs

    def deactivate_impl(self):
        del self.predictor
