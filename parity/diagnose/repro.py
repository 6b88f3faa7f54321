"""The repro bundle: what an upstream issue needs to reproduce a failing comparison, written as ``repro/``.

- ``inputs/``: the worst failing clips' input tensors (``.npy``) and a list with their labels;
- ``logits.npz``: every backend's logits on those clips;
- ``artifacts.json`` (model paths and hashes), ``environment.json``, ``lint.json`` and ``diagnosis.json`` when present;
- ``parity.toml``: the failing comparison's configuration, on those tensors;
- ``reproduce.sh``: reruns exactly that comparison (``parity run --config parity.toml``), no decoding.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from ..backends.registry import LaneKind
from ..config import config_from_dict, dump_config

SCRIPT = """#!/usr/bin/env bash
# Reruns {what} on the {n} worst failing clips of the run finished {finished},
# on the very input tensors it compared (inputs/, no decoding). Exit 1 reproduces the failure.
set -euo pipefail
cd "$(dirname "$0")"
exec parity run --config parity.toml "$@"
"""


def write_repro(result, folder: Path, finished: str) -> Path | None:
    """Write ``folder/repro`` for the failing comparisons of ``result``; None when nothing failed."""
    failing = [c for c in result.comparisons if not c.passed]
    if not failing or not result.repro_inputs or any(b.kind == LaneKind.GOLDEN for b in result.backends):
        return None  # against golden outputs the stored logits are the reference: rerun with --golden instead
    repro = folder / "repro"
    inputs = repro / "inputs"
    inputs.mkdir(parents=True)
    lines, rows = [], []
    paths = [str(p) for p in result.logits.get("clips", [])]
    for i, (path, label, tensor) in enumerate(result.repro_inputs):
        name = f"{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', Path(path).stem)[:60]}.npy"
        np.save(inputs / name, tensor)
        lines.append(f"{name} {label}" if label is not None else name)
        rows.append(paths.index(path))
    (inputs / "list.txt").write_text("\n".join(lines) + "\n")
    np.savez_compressed(repro / "logits.npz", clips=np.array([result.repro_inputs[i][0] for i in range(len(rows))]),
                        **{k: v[rows] for k, v in result.logits.items() if k != "clips"})
    (repro / "artifacts.json").write_text(json.dumps(result.artifacts, indent=2, default=str))
    (repro / "environment.json").write_text(json.dumps(result.environment, indent=2))
    if result.lint:
        (repro / "lint.json").write_text(json.dumps(result.lint, indent=2, default=str))
    if result.diagnosis:
        (repro / "diagnosis.json").write_text(json.dumps(result.diagnosis, indent=2, default=str))

    cfg = config_from_dict(result.config)
    backends = list(dict.fromkeys([result.reference] + [c.base_backend for c in failing]))
    cfg = dataclasses.replace(cfg, clips=str((inputs / "list.txt").resolve()), backends=backends, report=str((repro / "rerun").resolve()),
                              workers=0, localize=False, preprocess=cfg.preprocess_variants()[0], tensor_cache=None,
                              engine="local", labels=None)
    (repro / "parity.toml").write_text(dump_config(cfg, base=repro, only_below=True))  # inputs and rerun relative: the bundle can move
    what = ", ".join(f"{c.backend} vs {c.reference}" for c in failing)
    script = repro / "reproduce.sh"
    script.write_text(SCRIPT.format(what=what, n=len(rows), finished=finished))
    script.chmod(0o755)
    return repro
