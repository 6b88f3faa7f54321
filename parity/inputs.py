"""One clip -> its decoded, preprocessed tensor, with the clip's content hash and an optional tensor cache.

``decode_clip`` is what every decode worker runs (in a local process pool or a Ray task); the
streaming around it lives in ``parity.stream``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .artifacts import sha256_file, sha256_json
from .clips import Clip, special_kind
from .errors import HarnessError, one_line
from .preprocess import ClipError, PreprocessConfig, clip_tensor, decoder_name, load_clip_frames
from .progress import progress


class NotRegularFile(ClipError, OSError):
    """A clip (or a file in its frame folder) that is a device, FIFO or socket: refused before it is read.

    An ``OSError`` too, so callers that leave unreadable clips out (the INT8 calibration key) do so here.
    """


def check_regular(path: Path) -> None:
    """Raise ``NotRegularFile`` when ``path`` is a character or block device, a FIFO or a socket."""
    kind = special_kind(path)
    if kind:
        raise NotRegularFile(f"{path}: not a regular file ({kind})")


@dataclass
class ClipInput:
    """One clip's tensor ``[1, T, 3, S, S]``, or the one-line reason it has none.

    ``index`` is the clip's position in the full list (shards keep it, so merges can restore the
    order); ``decoded`` says whether this item cost a real decode (False for a tensor-cache hit).
    """

    clip: Clip
    index: int = 0
    tensor: np.ndarray | None = None
    error: str | None = None
    sha256: str | None = None
    decoded: bool = False
    seconds: float = 0.0
    timed_out: bool = False  # the decode passed the time limit and its worker was killed
    cache_notes: list[str] = field(default_factory=list)  # tensor-cache entries rejected on read, one line each
    golden_row: np.ndarray | None = None  # the stored reference logits, in a run against golden outputs
    # The same decoded frames through other preprocessing variants (preprocessing attribution).
    alt_tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def feed(self, variant: str | None = None) -> np.ndarray:
        return self.tensor if variant is None else self.alt_tensors[variant]

    @property
    def ok(self) -> bool:
        return self.tensor is not None


class TensorCache:
    """Decoded tensors on disk, keyed by the clip's sha256, the preprocessing and the decoder's name and version.

    A rerun against a new ONNX model decodes nothing. Each entry (``KEY.npz``) holds the tensor and
    what proves it: the key it was made for (clip sha256, preprocessing, decoder) and the sha256 of
    the tensor's dtype, shape and bytes. An entry is used only when both check out on read; one that
    does not (moved or swapped with another, zeroed, truncated, altered) is a miss, decoded again and
    rewritten, and a one-line problem waits in ``problems`` for the clip's note. Writes are atomic (temp
    file, then rename), so concurrent workers and interrupted runs never leave a half-written tensor.
    """

    SUFFIX = ".npz"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.problems: list[str] = []  # entries rejected on read since the last take_problems()

    def check(self) -> None:
        """The folder exists (made if need be) and can be written; else a one-line HarnessError."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self.folder).close()
        except OSError as exc:
            raise HarnessError(f"{self.folder}: cannot use it as the tensor cache: {exc.strerror or exc}") from None

    @staticmethod
    def key(sha256: str, cfg: PreprocessConfig, decoder: str) -> list:
        """What an entry is made from, as recorded in it."""
        return [sha256, cfg.to_dict(), decoder]

    def path(self, sha256: str, cfg: PreprocessConfig, decoder: str) -> Path:
        return self.folder / f"{sha256_json(self.key(sha256, cfg, decoder))[:32]}{self.SUFFIX}"

    def get(self, sha256: str, cfg: PreprocessConfig, decoder: str) -> np.ndarray | None:
        """The entry's tensor when its recorded key and content hash prove it; else None (a problem is kept)."""
        path = self.path(sha256, cfg, decoder)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                tensor, meta = npz["tensor"], json.loads(str(npz["meta"][()]))
        except Exception as exc:  # not a zip, truncated, CRC error, fields missing, bad JSON: never this clip's error
            self.problems.append(f"{path}: tensor cache entry unreadable ({one_line(exc)})")
            return None
        if meta.get("key") != json.loads(json.dumps(self.key(sha256, cfg, decoder))):
            self.problems.append(f"{path}: tensor cache entry was made for another clip or preprocessing (moved or swapped)")
            return None
        if meta.get("tensor_sha256") != tensor_sha256(tensor):
            self.problems.append(f"{path}: tensor cache entry's tensor does not match its recorded sha256 (damaged or altered)")
            return None
        return tensor

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems

    def put(self, sha256: str, cfg: PreprocessConfig, decoder: str, tensor: np.ndarray) -> None:
        path = self.path(sha256, cfg, decoder)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"key": self.key(sha256, cfg, decoder), "tensor_sha256": tensor_sha256(tensor)}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=self.SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, tensor=tensor, meta=np.array(meta))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def size(self) -> dict:
        files = [f for f in self.folder.glob(f"*{self.SUFFIX}") if not f.name.startswith(".")] if self.folder.is_dir() else []
        return {"folder": str(self.folder.resolve()), "entries": len(files), "bytes": sum(f.stat().st_size for f in files)}


def tensor_sha256(tensor: np.ndarray) -> str:
    """sha256 of a tensor's dtype, shape and bytes (C order): what a cache entry must still hold."""
    h = hashlib.sha256(f"{np.dtype(tensor.dtype).str} {list(tensor.shape)} ".encode())
    h.update(np.ascontiguousarray(tensor).tobytes())
    return h.hexdigest()


def decode_clip(clip: Clip, cfg: PreprocessConfig, index: int = 0, cache: TensorCache | None = None,
                variants: tuple[str, ...] = ()) -> ClipInput:
    """Decode and preprocess one clip (also through the other ``variants``, from the same frames).

    A bad clip gets its one-line error; nothing is raised. A ``.npy`` file is a saved input tensor
    (``parity run --inputs``): it is loaded, checked against the preprocessing, and not decoded.
    """
    def work(item: ClipInput) -> None:
        if clip.path.suffix == ".npy":
            item.tensor = _saved_tensor(clip.path, cfg)
            return
        decoder = decoder_name(clip.path)
        configs = {None: cfg, **{v: replace(cfg, variant=v) for v in variants}}
        tensors = {v: cache.get(item.sha256, c, decoder) if cache is not None else None for v, c in configs.items()}
        if any(t is None for t in tensors.values()):
            frames = load_clip_frames(clip.path, cfg.num_seg, clip.num_frames)
            item.decoded = True
            for v, c in configs.items():
                if tensors[v] is None:
                    tensors[v] = clip_tensor(clip.path, frames, c)
                    if cache is not None:
                        try:
                            cache.put(item.sha256, c, decoder, tensors[v])
                        except OSError:  # a full disk costs the cache entry, not the clip
                            pass
        item.tensor = tensors.pop(None)
        item.alt_tensors = tensors

    return guarded_decode(clip, index, cache, work)


def guarded_decode(clip: Clip, index: int, cache: TensorCache | None, work) -> ClipInput:
    """One clip's decode, ``work(item)`` after the clip is found and hashed, with every failure its one-line error
    (nothing is raised), the cache entries that did not prove out named, and the seconds it took."""
    item = ClipInput(clip, index)
    start = time.perf_counter()
    try:
        if clip.error:
            raise ClipError(clip.error)
        if not clip.path.exists():
            raise ClipError(f"{clip.path}: file not found")
        item.sha256 = clip_sha256(clip.path)
        work(item)
    except ClipError as exc:
        item.error = str(exc)
    except OSError as exc:  # name too long, permission denied, I/O error, ...
        item.error = f"{clip.path}: cannot read: {exc.strerror or exc}"
    except Exception as exc:  # a decoder's own exception types: still this clip's error, never the run's
        item.error = f"{clip.path}: cannot decode: {one_line(exc)}"
    if cache is not None:  # entries that did not prove out were not used: the clip was decoded again. Say so, naming it.
        item.cache_notes = [f"{problem}; {clip.path} was decoded again" for problem in cache.take_problems()]
    item.seconds = time.perf_counter() - start
    return item


def _saved_tensor(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    try:
        tensor = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ClipError(f"{path}: not a saved input tensor: {exc}") from None
    want = (1, cfg.num_seg, 3, cfg.target_size, cfg.target_size)
    if tensor.shape != want or tensor.dtype != np.float32:
        raise ClipError(f"{path}: a saved input must be float32 {list(want)}, this is {tensor.dtype} {list(tensor.shape)}")
    return tensor


def prepare_inputs(clips: list[Clip], cfg: PreprocessConfig, cache_dir: Path | None = None, desc: str = "decode") -> list[ClipInput]:
    """Every clip decoded in this process, as a list (training and small tools; runs stream instead)."""
    cache = TensorCache(cache_dir) if cache_dir is not None else None
    return [decode_clip(clip, cfg, i, cache) for i, clip in enumerate(progress(clips, desc=desc, unit="clip"))]


def clip_sha256(path: Path) -> str:
    """sha256 of a video file, or of a frame folder's file names and contents.

    A device, FIFO or socket (the clip, or an entry of its frame folder) is ``NotRegularFile``:
    hashing ``/dev/zero`` would never end, and a FIFO would block until a writer came.
    """
    path = Path(path)
    check_regular(path)
    if path.is_dir():
        entries = sorted(path.iterdir())
        for p in entries:
            check_regular(p)
        return sha256_json([(p.name, sha256_file(p)) for p in entries if p.is_file()])
    return sha256_file(path)
