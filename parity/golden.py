"""Golden outputs: a run's reference logits, stored with what produced them, to gate later
releases (for example a TensorRT-only deploy box) without running the reference again."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import HarnessError

GOLDEN_JSON = "golden.json"
GOLDEN_NPZ = "golden.npz"


def save(report_dir: str | Path, to: str | Path) -> Path:
    """Store the reference logits of the run in ``report_dir`` into ``to``."""
    report_dir, to = Path(report_dir), Path(to)
    results, logits_file = report_dir / "results.json", report_dir / "logits.npz"
    if not results.is_file() or not logits_file.is_file():
        raise HarnessError(f"{report_dir}: not a report folder (needs results.json and logits.npz)")
    data = json.loads(results.read_text())
    logits = np.load(logits_file)
    reference = data["reference"]
    if reference not in logits.files:
        raise HarnessError(f"{report_dir}: the reference {reference} has no logits in logits.npz (did it run?)")
    paths = [str(p) for p in logits["clips"]]
    clips = {c["path"]: c for c in data["clips"]}
    meta = {
        "schema_version": 1,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reference": reference,
        "from_report": str(report_dir.resolve()),
        "artifacts": data["artifacts"],
        "preprocess": data["preprocess"],
        "environment": data["environment"],
        "clips": [{"path": p, "label": clips[p]["label"], "sha256": clips[p]["sha256"]} for p in paths],
    }
    to.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(to / GOLDEN_NPZ, logits=logits[reference], clips=np.array(paths))
    (to / GOLDEN_JSON).write_text(json.dumps(meta, indent=2))
    return to


@dataclass
class Golden:
    folder: Path
    meta: dict
    logits: np.ndarray
    _index: dict | None = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path) -> "Golden":
        folder = Path(folder)
        if not (folder / GOLDEN_JSON).is_file() or not (folder / GOLDEN_NPZ).is_file():
            raise HarnessError(f"{folder}: not a golden folder (needs {GOLDEN_JSON} and {GOLDEN_NPZ}; make one with `parity golden save`)")
        return cls(folder, json.loads((folder / GOLDEN_JSON).read_text()), np.load(folder / GOLDEN_NPZ)["logits"])

    def clips(self) -> list:
        """The clips the outputs were saved for, as a clip list."""
        from .clips import Clip

        return [Clip(Path(c["path"]), c["label"]) for c in self.meta["clips"]]

    @property
    def name(self) -> str:
        return f"golden:{self.meta['reference']}"

    def row_for(self, path: str, sha256: str | None) -> np.ndarray:
        """The stored logits of a clip; ``ClipChanged`` or ``NotInGolden`` say why there are none."""
        if self._index is None:
            self._index = {str(Path(e["path"]).resolve()): i for i, e in enumerate(self.meta["clips"])}
        i = self._index.get(str(Path(path).resolve()))
        if i is None:
            raise NotInGolden(f"{path}: not in the golden outputs of {self.folder}")
        entry = self.meta["clips"][i]
        if sha256 != entry["sha256"]:
            raise ClipChanged(f"{path}: changed since the golden outputs were saved (sha256 {str(sha256)[:12]}, golden {entry['sha256'][:12]})")
        return self.logits[i]


class NotInGolden(Exception):
    pass


class ClipChanged(NotInGolden):
    pass
