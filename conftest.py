"""Top-level conftest: makes the artifact fixtures in fixtures/ available to every test."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PARITY_PROGRESS", "0")

pytest_plugins = ["fixtures.artifacts"]


# Fixtures that train, export or convert a model, or install Paddle 2.6 (cached, but minutes on a cold cache).
BUILDING_FIXTURES = {"demo_artifacts", "paddle26_python", "small_pptsm_r50", "softmax_model"}


def pytest_collection_modifyitems(items):
    """A test that needs a built artifact is slow, whether or not it says so: `-m "not slow"` builds nothing."""
    import pytest

    for item in items:
        if BUILDING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
