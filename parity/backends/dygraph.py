"""The training checkpoint as a backend (``paddle-dygraph``): the model code in eval mode, the first hop of the chain."""
from __future__ import annotations

import time
from collections import OrderedDict

from polygraphy.backend.base import BaseRunner

from ..checkpoint import load_checkpoint
from ..models import ModelSpec, build_model
from ..optional import lazy

paddle = lazy("paddle")


class DygraphRunner(BaseRunner):
    """Runs a PaddleVideo checkpoint (any form ``parity export`` accepts) through ``parity.models`` in eval mode."""

    def __init__(self, weights, spec: dict, name: str = "paddle-dygraph"):
        super().__init__(name=name, prefix="dygraph-runner")
        self.weights, self.spec = weights, spec

    def activate_impl(self):
        if not paddle.in_dynamic_mode():
            paddle.disable_static()
        self.model = build_model(ModelSpec(**self.spec))
        load_checkpoint(self.model, self.weights)
        self.model.eval()

    def get_input_metadata_impl(self):
        raise NotImplementedError("the dygraph runner takes feed dicts without input checks")

    def infer_impl(self, feed_dict):
        (x,) = feed_dict.values()
        start = time.perf_counter()
        with paddle.no_grad():
            out = self.model(paddle.to_tensor(x)).numpy()
        self.inference_time = time.perf_counter() - start
        return OrderedDict(logits=out)

    def deactivate_impl(self):
        del self.model
