"""Files to Ray workers without a shared filesystem: bytes through the object store, proven by their sha256.

The driver reads each model file once (``send``); an actor writes it into its node's artifact
cache (``receive``: ``ray-files/SHA/NAME``), where a file already there with the same hash is
reused, and checks what arrived and what was written against the hash the driver took. Files that
must sit side by side (a Paddle model and its parameters, an ONNX model and its external data, a
TensorRT engine and its sidecar) go to one folder. Clips travel the same way, one task's bytes each
(``clip_payload`` / ``clip_from_payload``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import ArtifactCache, PaddleModel, sha256_file
from ..errors import HarnessError
from ..optional import lazy

onnx = lazy("onnx")


CALIBRATED = "calibrated:"  # a group of ``send``: a backend's calibrated model (``ModelArtifacts.calibrated``)


@dataclass(frozen=True)
class SentFile:
    name: str
    sha256: str
    ref: object  # the ObjectRef of its bytes


def _model_files(art) -> dict[str, list[Path]]:
    """The files each model setting of ``art`` names, in groups that stay together."""
    groups = {}
    if art.paddle_model is not None:
        groups["paddle_model"] = [art.paddle_model.model_file, art.paddle_model.params_file]
    if art.onnx is not None:
        groups["onnx"] = [Path(art.onnx), *_external_data(Path(art.onnx))]
    if art.trt_engine is not None:
        sidecar = Path(art.trt_engine).with_name(Path(art.trt_engine).name + ".json")
        groups["trt_engine"] = [Path(art.trt_engine)] + ([sidecar] if sidecar.is_file() else [])
    if art.weights is not None:
        groups["weights"] = [Path(art.weights)]
    for backend, path in art.calibrated.items():
        groups[f"{CALIBRATED}{backend}"] = [Path(path)]
    return groups


def _external_data(onnx_path: Path) -> list[Path]:
    """The files an ONNX model keeps its large tensors in (its own folder, by relative name)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    names = {e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for e in t.external_data if e.key == "location"}
    return [onnx_path.parent / n for n in sorted(names)]


def send(art, put) -> dict[str, list[SentFile]]:
    """Each model file's bytes into the object store (``put`` is ``ray.put``), once per distinct content."""
    refs: dict[str, object] = {}
    sent = {}
    for key, files in _model_files(art).items():
        sent[key] = []
        for path in files:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest not in refs:
                refs[digest] = put(data)
            sent[key].append(SentFile(path.name, digest, refs[digest]))
    return sent


def _fetch(f: SentFile, folder: Path, get) -> Path:
    path = folder / f.name
    if path.is_file() and sha256_file(path) == f.sha256:  # already on this node
        return path
    data = get(f.ref)
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise HarnessError(f"{f.name}: the bytes that reached this node do not have the sha256 the driver sent ({f.sha256[:12]})")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{f.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)  # atomic: two actors on one node may write the same file
    if sha256_file(path) != f.sha256:
        raise HarnessError(f"{path}: written to this node's cache, it reads back with another sha256 than {f.sha256[:12]}")
    return path


def receive(art, sent: dict[str, list[SentFile]], get, cache: ArtifactCache | None = None):
    """``art`` with its model files in this node's artifact cache (which derived files are cached in too)."""
    cache = cache or ArtifactCache()
    local = {}
    for key, files in sent.items():
        folder = cache.root / "ray-files" / files[0].sha256
        local[key] = [_fetch(f, folder, get) for f in files]
    changes = {key: paths[0] for key, paths in local.items() if not key.startswith(CALIBRATED)}
    changes["calibrated"] = {key.removeprefix(CALIBRATED): paths[0] for key, paths in local.items() if key.startswith(CALIBRATED)}
    if "paddle_model" in local:
        changes["paddle_model"] = PaddleModel(*local["paddle_model"])
    return dataclasses.replace(art, cache=cache, **changes)


def clip_payload(path: Path) -> bytes | dict[str, bytes]:
    """A clip's bytes: a video or saved tensor file, or a frame folder's files by name."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}
    return path.read_bytes()


def clip_from_payload(payload: bytes | dict[str, bytes], name: str, folder: Path) -> Path:
    """The clip written under ``folder`` with its own name (decoders go by the suffix; hashes by the names)."""
    path = folder / name
    if isinstance(payload, dict):
        path.mkdir()
        for entry, data in payload.items():
            (path / entry).write_bytes(data)
    else:
        path.write_bytes(payload)
    return path
