"""Another PaddleVideo helper's clip -> its input arrays, one per model input (``parity.recipes``), with the clip's
content hash, one-line errors and tensor cache exactly as PP-TSM's ``inputs.decode_clip`` gives them.

A clip's tensor is then one array (a one-input model: TimeSformer, ppTSN, ...) or a tuple of arrays in the model's
input order (SlowFast's slow and fast paths), each with the helper's own leading dimension (1, or its views folded
into N). PP-TSM's own path stays ``inputs.decode_clip``, untouched: ``decode`` sends a clip there unless a recipe
is given.

The tensor cache keys an entry by the recipe (its ``to_dict``: helper and parameters) and the decoder; a tuple is
stored as ``tensor_0``, ``tensor_1``, ... with one sha256 each, checked on read as a single tensor's is.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .clips import Clip
from .errors import one_line
from .inputs import ClipInput, TensorCache, decode_clip, guarded_decode, tensor_sha256
from .preprocess import PreprocessConfig, decoder_name

Tensor = np.ndarray | tuple  # one array, or one per model input in the model's order


def arrays_of(tensor: Tensor) -> tuple[np.ndarray, ...]:
    """A clip's input as a tuple of arrays, one per model input."""
    return tuple(tensor) if isinstance(tensor, (tuple, list)) else (tensor,)


def recipe_tensor(recipe, path: Path) -> Tensor:
    """A clip through a helper's recipe: its one array, or a tuple of them (one per model input)."""
    arrays = tuple(np.ascontiguousarray(a) for a in recipe.preprocess(path))
    return arrays[0] if len(arrays) == 1 else arrays


def decode(clip: Clip, cfg: PreprocessConfig, index: int = 0, cache: TensorCache | None = None, variants: tuple[str, ...] = (),
           recipe=None) -> ClipInput:
    """What a decode worker runs: PP-TSM's ``inputs.decode_clip``, or with ``recipe`` the helper's ``decode_helper_clip``."""
    if recipe is None:
        return decode_clip(clip, cfg, index, cache, variants)
    return decode_helper_clip(clip, recipe, index, cache)


def decode_helper_clip(clip: Clip, recipe, index: int = 0, cache: TensorCache | None = None) -> ClipInput:
    """One clip through ``recipe``; a bad clip gets its one-line error (worded as ``decode_clip`` words it), nothing is raised."""
    def work(item: ClipInput) -> None:
        decoder = f"{recipe.decoder}:{decoder_name(clip.path)}"
        tensor = cache_get(cache, item.sha256, recipe, decoder) if cache is not None else None
        if tensor is None:
            tensor = recipe_tensor(recipe, clip.path)
            item.decoded = True
            if cache is not None:
                try:
                    cache_put(cache, item.sha256, recipe, decoder, tensor)
                except OSError:  # a full disk costs the cache entry, not the clip
                    pass
        item.tensor = tensor

    return guarded_decode(clip, index, cache, work)


def cache_get(cache: TensorCache, sha256: str, recipe, decoder: str) -> Tensor | None:
    """The entry's array(s) when its recorded key and every content hash prove them; else None (a problem is kept)."""
    path = cache.path(sha256, recipe, decoder)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"][()]))
            proof = meta.get("tensor_sha256")
            tensor = tuple(npz[f"tensor_{i}"] for i in range(len(proof))) if isinstance(proof, list) else npz["tensor"]
    except Exception as exc:  # not a zip, truncated, CRC error, fields missing, bad JSON: never this clip's error
        cache.problems.append(f"{path}: tensor cache entry unreadable ({one_line(exc)})")
        return None
    if meta.get("key") != json.loads(json.dumps(cache.key(sha256, recipe, decoder))):
        cache.problems.append(f"{path}: tensor cache entry was made for another clip or preprocessing (moved or swapped)")
        return None
    if proof != _content(tensor):
        cache.problems.append(f"{path}: tensor cache entry's tensor does not match its recorded sha256 (damaged or altered)")
        return None
    return tensor


def cache_put(cache: TensorCache, sha256: str, recipe, decoder: str, tensor: Tensor) -> None:
    """Write an entry atomically (temp file, then rename), with its key and the sha256 of every array."""
    path = cache.path(sha256, recipe, decoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"key": cache.key(sha256, recipe, decoder), "tensor_sha256": _content(tensor)}, sort_keys=True)
    arrays = {f"tensor_{i}": a for i, a in enumerate(tensor)} if isinstance(tensor, tuple) else {"tensor": tensor}
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=cache.SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, meta=np.array(meta))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _content(tensor: Tensor) -> str | list[str]:
    """What an entry records of its tensor: one sha256, or one per model input."""
    return [tensor_sha256(a) for a in tensor] if isinstance(tensor, tuple) else tensor_sha256(tensor)
