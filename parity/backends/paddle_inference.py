"""Paddle Inference as a Polygraphy runner."""
from __future__ import annotations

import time
from collections import OrderedDict

from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from ..build import PaddleModel
from ..native import captured_output


def make_config(model: PaddleModel, threads: int | None = None):
    """A CPU ``paddle.inference.Config`` for ``model``: the program as exported, unfused.

    IR optimization and oneDNN are off. The reference should compute what the model says,
    and Paddle 3.3's oneDNN fuse passes crash the process (SIGSEGV in
    conv_activation_mkldnn_fuse_pass) on PP-TSM v1's conv + leaky_relu.
    """
    from paddle import inference

    config = inference.Config(str(model.model_file), str(model.params_file))
    config.disable_gpu()
    config.disable_mkldnn()
    config.switch_ir_optim(False)
    config.disable_glog_info()
    if threads:
        config.set_cpu_math_library_num_threads(threads)
    return config


class PaddleInferenceRunner(BaseRunner):
    """Runs an exported Paddle inference model through ``paddle.inference`` predictors."""

    def __init__(self, model: PaddleModel, threads: int | None = None, config_factory=None, name=None):
        super().__init__(name=name, prefix="paddle-runner")
        self.model = model
        self.threads = threads
        self._config_factory = config_factory or (lambda: make_config(model, threads))

    def activate_impl(self):
        from paddle import inference

        with captured_output():  # Paddle's analysis passes print to stdout
            self.predictor = inference.create_predictor(self._config_factory())
        self._warmed_up = False

    def get_input_metadata_impl(self):
        import numpy as np

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
