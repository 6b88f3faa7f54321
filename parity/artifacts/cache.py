"""The artifact cache: a folder per (stage, content-hash key), built once, renamed into place.

Every build stage (export, ONNX conversion, FP16, TensorRT engines, the demo's clips and
training) keys its output by the sha256 of its inputs, so nothing is rebuilt that has not changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def code_hash(*modules: str) -> str:
    """sha256 of the source of the named modules (every .py file of a package)."""
    import importlib.util

    files = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no source for module {name}")
        origin = Path(spec.origin)
        files += sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    return sha256_json([(f.name, sha256_file(f)) for f in files])


def default_cache_dir() -> Path:
    env = os.environ.get("PARITY_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pptsm-parity"


class ArtifactCache:
    """A folder per (stage, key). A build writes to a temp folder that is renamed on success."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def get_or_build(self, stage: str, key_inputs: dict, build: Callable[[Path], None], code: tuple[str, ...] = ()) -> Path:
        """The folder of ``stage`` for these inputs, built by ``build(folder)`` the first time.

        ``code`` names the modules (or packages) whose source builds the stage: their content is
        part of the key, so an entry built by older code is never read back.
        """
        if code:
            key_inputs = {**key_inputs, "code": code_hash(*code)}
        key = sha256_json({"stage": stage, **key_inputs})[:20]
        final = self.root / stage / key
        if (final / ".complete").is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
        try:
            build(tmp)
            (tmp / ".complete").write_text(json.dumps(key_inputs, sort_keys=True, default=str))
            if final.exists() and not (final / ".complete").is_file():
                shutil.rmtree(final, ignore_errors=True)  # a build that died half-way
            try:
                tmp.rename(final)
            except OSError:
                # Another process finished the same build first: keep its result, drop ours.
                if not (final / ".complete").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final
