"""Backends are plugins: an out-of-tree package's entry point adds a backend, with no edit to the harness."""
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from parity.backends import BACKENDS, GROUP, registry

PLUGIN = Path(__file__).parent.parent / "fixtures" / "plugin_backend"


def _loaded(monkeypatch, *eps: EntryPoint) -> dict:
    builtin = EntryPoint("builtin", registry.BUILTIN, GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [*eps, builtin] if group == GROUP else [])
    return registry.load_plugins()


def test_built_in_backends_register_through_the_entry_point_group():
    from importlib.metadata import entry_points

    assert [ep.value for ep in entry_points(group=GROUP)] == [registry.BUILTIN]  # no plugin installed here
    assert list(BACKENDS)[:3] == ["paddle-dygraph", "paddle", "paddle-native"]


@pytest.mark.parametrize("value, reason", [
    ("no_such_plugin_module:BACKEND", "did not load: ModuleNotFoundError"),
    ("os:sep", "loads to str, not a Backend or a list of Backends"),
    ("parity.backends.builtin:_dygraph", "loads to function"),
])
def test_a_plugin_that_fails_to_load_is_one_unavailable_backend(monkeypatch, value, reason):
    found = _loaded(monkeypatch, EntryPoint("broken", value, GROUP))
    assert list(found)[0] == "paddle-dygraph" and "paddle" in found  # the built-in ones first, all there
    reason_given = found["broken"].availability()
    assert reason_given.startswith("unavailable: plugin broken (") and reason in reason_given and "\n" not in reason_given


def test_a_plugin_may_not_take_a_built_in_name(monkeypatch):
    found = _loaded(monkeypatch, EntryPoint("mine", "parity.backends.builtin:BUILTIN", GROUP))  # every built-in name again
    assert found["paddle"].description.startswith("Paddle Inference")  # the built-in one kept
    assert "the name 'paddle' is taken" in found["mine:paddle"].availability()


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The fixture package installed into a folder of its own (PYTHONPATH), never into the venv."""
    site, source = tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(PLUGIN, source)  # the build writes beside its sources
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True)
    return site


def test_an_installed_plugin_is_listed_run_compared_and_reported(plugin_site, demo_artifacts, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))}

    def parity(*args):
        return subprocess.run([sys.executable, "-m", "parity", *map(str, args)], capture_output=True, text=True, env=env, timeout=600)

    listed = parity("backends", "--json")
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["onnxruntime-basic"]["available"] and rows["onnxruntime-basic"]["precision"] == "fp32"
    assert "onnxruntime-basic" not in BACKENDS  # this process (the venv) does not see it

    val = Path(demo_artifacts.val_list)
    clips = tmp_path / "clips.txt"
    clips.write_text("".join(f"{val.parent / line.split()[0]} {line.split()[1]}\n" for line in val.read_text().splitlines()[:6]))
    report = tmp_path / "report"
    proc = parity("run", "--paddle-model", demo_artifacts.paddle_model.model_file, "--onnx", demo_artifacts.onnx, "--clips", clips,
                  "--backends", "paddle,onnxruntime,onnxruntime-basic", "--report", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((report / "results.json").read_text())
    record = next(b for b in data["backends"] if b["name"] == "onnxruntime-basic")
    assert record["status"] == "ok" and record["kind"] == "main" and record["description"].endswith("(a plugin)")
    (comp,) = [c for c in data["comparisons"] if c["backend"] == "onnxruntime-basic"]
    assert comp["reference"] == "paddle" and comp["passed"] and comp["clips_compared"] == 6
    assert data["hop_matrix"]["backends"] == ["paddle", "onnxruntime", "onnxruntime-basic"]  # its chain place: after onnxruntime
    assert [(h["from"], h["to"]) for h in data["hops"]] == [("paddle", "onnxruntime"), ("onnxruntime", "onnxruntime-basic")]
    assert "onnxruntime-basic" in (report / "index.html").read_text()
