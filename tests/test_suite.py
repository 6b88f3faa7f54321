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
