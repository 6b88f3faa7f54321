"""Backends: one Polygraphy runner per way of running the model, behind one registry of plugins.

A ``Backend`` says what it needs (``requires``), whether it can run here (``availability``), how to make its
runner (``make_runner``) and every fact the harness needs about it. The registry (``registry.py``) loads them from
the ``pptsm_parity.backends`` entry points, the built-in ones (``builtin.py``) included.
"""
from ..precision.tolerance import PRECISION_RANK
from .registry import (
    BACKENDS,
    DEFAULT_BACKENDS,
    GROUP,
    Backend,
    Lane,
    LaneKind,
    ModelArtifacts,
    Selection,
    Status,
    chain_position,
    external_backends,
    resolve,
    select,
)

__all__ = ["BACKENDS", "DEFAULT_BACKENDS", "GROUP", "PRECISION_RANK", "Backend", "Lane", "LaneKind", "ModelArtifacts", "Selection",
           "Status", "chain_position", "external_backends", "resolve", "select"]
