"""Optional dependencies: whether one can be imported, found without importing it (paddle and tensorrt are slow to import)."""
from __future__ import annotations

import importlib.util
import signal
import sys
import threading

from polygraphy import mod


def missing(*modules: str) -> str | None:
    """``"NAME not importable"`` for the first of ``modules`` that is not installed; None when all are."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a dotted name whose parent is missing, or a module without a spec
            found = False
        if not found:
            return f"{module} not importable"
    return None


class _Lazy:
    """A module imported on its first attribute, through Polygraphy's ``mod.lazy_import`` (quiet). Checked with
    ``missing`` first: a module that is not installed raises ImportError ``NAME not importable``, and Polygraphy
    is never asked to install it (whatever POLYGRAPHY_AUTOINSTALL_DEPS says). Once imported, it is read from
    ``sys.modules`` on every use, as an ``import`` statement would."""

    def __init__(self, name: str):
        self._name, self._module = name, mod.lazy_import(name, log=False)

    def __getattr__(self, attr: str):
        module = sys.modules.get(self._name)
        if module is not None:
            return getattr(module, attr)
        reason = missing(self._name)
        if reason:
            raise ImportError(reason)
        try:
            return getattr(self._module, attr)
        finally:
            _handlers_back()


def _handlers_back() -> None:
    """A native library may put its own C handler in place of the program's on import (paddle's for SIGTERM prints a
    crash report and aborts): a SIGINT or SIGTERM handler the program set in Python is put back."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)  # Python's record, which a C library's sigaction does not change
        if callable(handler):
            signal.signal(sig, handler)


def lazy(name: str):
    """``name`` as a module-level global that costs nothing until used (paddle, onnxruntime, tensorrt... are slow to import)."""
    return _Lazy(name)
