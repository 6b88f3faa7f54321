"""Top-level conftest: makes the artifact fixtures in fixtures/ available to every test."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PARITY_PROGRESS", "0")

pytest_plugins = ["fixtures.artifacts", "fixtures.paddlevideo", "fixtures.signatures"]


# Fixtures that train, export or convert a model, or install Paddle 2.6 (cached, but minutes on a cold cache).
BUILDING_FIXTURES = {"demo_artifacts", "paddle26_python", "small_pptsm_r50", "softmax_model", "signature_models", "ppvideo_source"}


def pytest_collection_modifyitems(items):
    """A test that needs a built artifact is slow, whether or not it says so: `-m "not slow"` builds nothing."""
    import pytest

    for item in items:
        if BUILDING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    """Every results.json this session wrote validates against the published schema."""
    import json

    import jsonschema

    from parity.schema import results_schema

    try:
        base = session.config._tmp_path_factory.getbasetemp()
    except (AttributeError, ValueError):
        return
    schema, bad = results_schema(), []
    for path in base.rglob("results.json"):
        try:
            jsonschema.validate(json.loads(path.read_text()), schema)
        except (jsonschema.ValidationError, ValueError) as exc:
            bad.append(f"{path}: {str(exc).splitlines()[0]}")
    if bad:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in bad:
            reporter.write_line(f"results.json not valid against the schema: {line}", red=True)
        session.exitstatus = 1
