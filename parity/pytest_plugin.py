"""pytest plugin of pptsm-parity (entry point ``pytest11``): the ``--parity-cache`` option."""
from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("parity", "PP-TSM deployment parity")
    group.addoption("--parity-cache", default=None, help="artifact cache folder for parity fixtures (default $PARITY_CACHE_DIR or ~/.cache/pptsm-parity)")
