"""The suite's own promises: the fast selection builds nothing, and cached artifacts follow the code."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.artifacts import ArtifactCache
from parity.artifacts.cache import code_hash

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_not_slow_builds_nothing(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "not slow", "-x"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PARITY_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    built = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert built == [], f"`-m 'not slow'` built {built}"


def test_cache_entries_follow_the_code_that_builds_them(tmp_path, monkeypatch):
    package = tmp_path / "stagecode"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "make.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = ArtifactCache(tmp_path / "cache")
    builds = []
    first = cache.get_or_build("stage", {"k": 1}, builds.append, code=("stagecode",))
    assert cache.get_or_build("stage", {"k": 1}, builds.append, code=("stagecode",)) == first and len(builds) == 1
    before = code_hash("stagecode")
    (package / "make.py").write_text("VALUE = 2\n")  # the code changed: the old entry is not read back
    assert code_hash("stagecode") != before
    assert cache.get_or_build("stage", {"k": 1}, builds.append, code=("stagecode",)) != first and len(builds) == 2


def test_every_mutation_applies_and_the_readme_names_only_real_ones(monkeypatch):
    """A mutation whose code moved would be reported STALE only when someone runs it: here, every run of the suite
    sees that each one still applies (its text found exactly once), names a test that exists, and that the README's
    "What the tests prove" table names no mutation that is not kept."""
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location("mutations", ROOT / "tests" / "mutations.py")
    mutations = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mutations", mutations)  # its dataclasses look their module up there
    spec.loader.exec_module(mutations)
    for m in mutations.MUTATIONS:
        for file, old, _ in m.edits:
            assert (ROOT / file).read_text().count(old) == 1, f"{m.name}: its text is not found exactly once in {file}"
        test_file, _, name = m.test.partition("::")
        assert f"def {name.split('[')[0]}(" in (ROOT / test_file).read_text(), f"{m.name}: no test {m.test}"
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## What the tests prove", 1)[1].split("\n## ", 1)[0]
    named = {n for row in table.splitlines() if row.startswith("| ") for n in re.findall(r"`([a-z0-9-]+)`", row.split(" | ")[-1])}
    assert named and named <= set(mutations.BY_NAME), f"the README names mutations that are not kept: {sorted(named - set(mutations.BY_NAME))}"
