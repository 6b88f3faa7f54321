"""pytest plugin of pptsm-parity (entry point ``pytest11``): its options, and nothing else until one is used.

Every pytest session in an environment with pptsm-parity installed loads this module, so it imports no more than pytest:
with ``--parity-config``, ``pytest_configure`` registers the gate (``parity.pytest_gate``: the run, its items and its
report), which is where the rest of parity is imported. Without it, a session pays nothing for parity being installed.
"""
from __future__ import annotations

import importlib

GATE = "parity.pytest_gate"


def pytest_addoption(parser):
    group = parser.getgroup("parity", "PP-TSM deployment parity")
    group.addoption("--parity-cache", default=None, help="artifact cache folder (default $PARITY_CACHE_DIR or ~/.cache/pptsm-parity)")
    group.addoption("--parity-config", default=None, help="parity.toml (or a pyproject.toml with [tool.parity]) to run as tests")
    group.addoption("--parity-report", default=None, help="report folder (default: the config's `report`)")
    group.addoption("--parity-summary-md", default=None, help="also write a short Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")


def pytest_configure(config):
    """With --parity-config: the gate's hooks join the session (pytest's own way to add a plugin at configure time)."""
    path = config.getoption("parity_config", default=None)
    if not path:
        return
    gate = importlib.import_module(GATE)
    config.pluginmanager.register(gate, "parity-gate")
    gate.configure(config, path)
