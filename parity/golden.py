"""Golden outputs: a run's reference logits, stored with what produced them, to gate later
releases (for example a TensorRT-only deploy box) without running the reference again."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifacts.cache import sha256_file
from .clips import Clip
from .errors import HarnessError, one_line
from .results import verify_report_files

GOLDEN_JSON = "golden.json"
GOLDEN_NPZ = "golden.npz"
SCHEMA_VERSION = 2  # 2: golden.json pins golden.npz by its sha256; clip paths relative to clips_root


def save(report_dir: str | Path, to: str | Path) -> Path:
    """Store the reference logits of the run in ``report_dir`` into ``to``."""
    report_dir, to = Path(report_dir), Path(to)
    results, logits_file = report_dir / "results.json", report_dir / "logits.npz"
    if not results.is_file() or not logits_file.is_file():
        raise HarnessError(f"{report_dir}: not a report folder (needs results.json and logits.npz)")
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{results}: not valid JSON: {one_line(exc)}") from None
    if not isinstance(data, dict) or data.get("complete") is not True:
        raise HarnessError(f"{results}: not the results of a finished run")
    verify_report_files(report_dir, data)  # the logits saved are the run's own
    logits = np.load(logits_file, allow_pickle=False)
    reference = data["reference"]
    if reference not in logits.files:
        raise HarnessError(f"{report_dir}: the reference {reference} has no logits in logits.npz (did it run?)")
    paths = [str(p) for p in logits["clips"]]
    clips = {c["path"]: c for c in data["clips"]}
    # Paths are stored relative to the clip list's folder, and that folder relative to the golden folder, so a
    # checkout elsewhere (the same tree moved) finds them; clips are matched by their sha256 first anyway.
    listed = Path(str(data["artifacts"].get("clips", "")))
    root = listed.parent if listed.suffix else listed
    if not root.is_dir():
        root = Path(os.path.commonpath(paths)) if paths else to
    stored = [_relative(p, root) for p in paths]
    to.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(to / GOLDEN_NPZ, logits=logits[reference], clips=np.array(stored))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reference": reference,
        "from_report": str(report_dir.resolve()),
        "artifacts": data["artifacts"],
        "preprocess": data["preprocess"],
        "environment": data["environment"],
        # golden.npz is proven by its bytes; its rows are these clips, in this order
        "npz_sha256": sha256_file(to / GOLDEN_NPZ),
        "clips_root": os.path.relpath(root.resolve(), to.resolve()),
        "clips": [{"path": s, "label": clips[p]["label"], "sha256": clips[p]["sha256"]} for s, p in zip(stored, paths)],
    }
    (to / GOLDEN_JSON).write_text(json.dumps(meta, indent=2))
    return to


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


@dataclass
class Golden:
    folder: Path
    meta: dict
    logits: np.ndarray
    # The folder the run's clip paths are relative to (the list's); default: where the golden clips were saved.
    root: Path | None = None
    _by_sha: dict | None = field(default=None, repr=False)
    _by_path: dict | None = field(default=None, repr=False)

    @property
    def clips_root(self) -> Path:
        return (self.folder / self.meta.get("clips_root", ".")).resolve()

    @classmethod
    def load(cls, folder: str | Path) -> "Golden":
        """Read and prove a golden folder: golden.npz must be the file golden.json pinned, its rows the clips
        golden.json lists, in that order. Anything else is a one-line HarnessError naming the file."""
        folder = Path(folder)
        meta_file, npz_file = folder / GOLDEN_JSON, folder / GOLDEN_NPZ
        if not meta_file.is_file() or not npz_file.is_file():
            raise HarnessError(f"{folder}: not a golden folder (needs {GOLDEN_JSON} and {GOLDEN_NPZ}; make one with `parity golden save`)")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise HarnessError(f"{meta_file}: not valid JSON: {one_line(exc)}") from None
        _check_meta(meta_file, meta)
        actual = sha256_file(npz_file)
        if actual != meta["npz_sha256"]:
            raise HarnessError(f"{npz_file}: its sha256 {actual[:16]} is not the {meta['npz_sha256'][:16]} that {GOLDEN_JSON} pinned; "
                               "the golden outputs were changed after they were saved")
        try:
            with np.load(npz_file, allow_pickle=False) as npz:
                logits, clips = npz["logits"], npz["clips"]
        except (OSError, ValueError, KeyError) as exc:
            raise HarnessError(f"{npz_file}: not golden outputs (an .npz of float logits and clip paths): {one_line(exc)}") from None
        listed = [c["path"] for c in meta["clips"]]
        if logits.dtype.kind != "f" or logits.ndim != 2 or len(logits) != len(listed) or not logits.shape[1]:
            raise HarnessError(f"{npz_file}: logits must be float [{len(listed)} clips, classes], not {logits.dtype} {list(logits.shape)}")
        if clips.dtype.kind != "U" or [str(c) for c in clips] != listed:
            raise HarnessError(f"{npz_file}: its clips are not the clips of {GOLDEN_JSON} in the same order")
        return cls(folder, meta, logits)

    def clips(self) -> list:
        """The clips the outputs were saved for, as a clip list (found below ``clips_root``, or at their absolute path)."""
        return [Clip(self.clips_root / c["path"], c["label"]) for c in self.meta["clips"]]

    @property
    def name(self) -> str:
        return f"golden:{self.meta['reference']}"

    def row_for(self, path: str, sha256: str | None) -> np.ndarray:
        """The stored logits of a clip: at its path (relative to the list's folder) when its content is the
        stored one, ``ClipChanged`` when it is not; a clip at a path the golden outputs do not know is found by
        its content (sha256), so the same clips in another checkout are the same clips; else ``NotInGolden``."""
        if self._by_sha is None:
            self._by_sha = {e["sha256"]: i for i, e in reversed(list(enumerate(self.meta["clips"])))}
            self._by_path = {e["path"]: i for i, e in enumerate(self.meta["clips"])}
        j = self._by_path.get(_relative(path, self.root or self.clips_root))
        if j is not None and self.meta["clips"][j]["sha256"] != sha256:
            entry = self.meta["clips"][j]
            raise ClipChanged(f"{path}: changed since the golden outputs were saved (sha256 {str(sha256)[:12]}, golden {entry['sha256'][:12]})")
        i = j if j is not None else self._by_sha.get(sha256)
        if i is None:
            raise NotInGolden(f"{path}: not in the golden outputs of {self.folder} (no clip there has its sha256 {str(sha256)[:12]})")
        return self.logits[i]


def _check_meta(path: Path, meta) -> None:
    """golden.json's fields, each of the type it must have."""
    if not isinstance(meta, dict):
        raise HarnessError(f"{path}: not golden metadata (a JSON object)")
    if meta.get("schema_version") != SCHEMA_VERSION or not isinstance(meta.get("npz_sha256"), str):
        raise HarnessError(f"{path}: golden metadata of schema {meta.get('schema_version')!r}, which does not pin {GOLDEN_NPZ} by content; "
                           f"save it again with `parity golden save` (schema {SCHEMA_VERSION})")
    for key, kind in (("reference", str), ("saved", str), ("preprocess", dict), ("artifacts", dict), ("clips", list), ("clips_root", str)):
        if not isinstance(meta.get(key), kind):
            raise HarnessError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    for i, clip in enumerate(meta["clips"]):
        if not (isinstance(clip, dict) and isinstance(clip.get("path"), str) and isinstance(clip.get("sha256"), str)
                and (clip.get("label") is None or type(clip.get("label")) is int)):
            raise HarnessError(f"{path}: clip entry {i} is not {{path, label, sha256}}")
    pre = meta["preprocess"]
    if not all(key in pre for key in ("num_seg", "target_size", "short_size", "variant", "input_name")):
        raise HarnessError(f"{path}: 'preprocess' lacks num_seg, target_size, short_size, variant or input_name")


class NotInGolden(Exception):
    pass


class ClipChanged(NotInGolden):
    pass
