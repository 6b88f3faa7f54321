"""Engine files in a backend's keyed cache folder: which ones a run built, and which it loaded as recorded for its key."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from ..artifacts import sha256_file

# Serialized engines each library writes into its cache folder.
PADDLE_TRT_ENGINES = ("trt_serialized*",)  # Paddle-TRT: _opt_cache/trt_serialized_<paddle key>
ORT_TRT_ENGINES = ("*.engine",)  # ORT's TensorRT EP: TensorrtExecutionProvider_TRTKernel_graph_..._sm<cc>.engine


def engine_files(folder: str | Path, patterns: tuple[str, ...]) -> dict[str, str]:
    """Every engine file under ``folder`` matching ``patterns``: {relative path: sha256}."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and any(fnmatch.fnmatch(path.name, p) for p in patterns):
            out[str(path.relative_to(folder))] = sha256_file(path)
    return out


RECORD = "engines.json"


def engine_evidence(folder: str | Path, patterns: tuple[str, ...], before: dict[str, str] | None = None) -> dict:
    """Which engine files under ``folder`` were built in this run (absent or different in ``before``, the listing
    taken before the library started) and which were loaded as recorded for this key by the run that built them.
    Anything else (``stray``) is a file that happens to be there. Built files are added to the key's record."""
    folder = Path(folder)
    now = engine_files(folder, patterns)
    record_path = folder / RECORD
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
    before = before or {}
    built = {f: h for f, h in now.items() if before.get(f) != h}
    loaded = {f: h for f, h in now.items() if f not in built and recorded.get(f) == h}
    stray = sorted(f for f in now if f not in built and f not in loaded)
    if built:
        record_path.write_text(json.dumps({**recorded, **built}, indent=2, sort_keys=True))
    return {"cache": str(folder), "key": folder.name, "built": sorted(built), "loaded": sorted(loaded), "stray": stray}
