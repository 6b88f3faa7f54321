"""Engines drive decoded clips through the backends' runners: ``local`` (this machine) or ``ray`` (a cluster).

An engine knows nothing about which backends exist or how results are judged. It is given
lanes (a backend at a batch size), the models, and a stream of decoded clips; it keeps every
runner activated for the whole run, calls ``on_clip(item, rows)`` once every lane has a clip's
logits (then the clip's tensor can go), and returns one ``BackendRecord`` per lane.
"""
from __future__ import annotations

from ..errors import HarnessError
from .local import LocalEngine
from .ray import RayEngine

ENGINES = ("local", "ray")


def get_engine(name: str, isolate: bool = False, address: str | None = None, timeout: float | None = None, shared_paths: bool = False):
    if name == "local":
        return LocalEngine(isolate=isolate, timeout=timeout)
    if name == "ray":
        return RayEngine(address=address, shared_paths=shared_paths)
    raise HarnessError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
