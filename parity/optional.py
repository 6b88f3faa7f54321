"""Optional dependencies: whether one can be imported, found without importing it (paddle and tensorrt are slow to import)."""
from __future__ import annotations

import importlib.util


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
