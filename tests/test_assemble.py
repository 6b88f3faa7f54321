"""One assembler: two shards merged make the very results.json one unsharded run makes.

Every key is compared but the timings (the schedule's measured costs among them), where each report was written, and
``run.shard`` / ``merged_from``.
That includes what follows the verdict (``diagnosis`` from ``--localize``, ``advice`` from ``--advise``, the
``int8`` record with its calibration overlap), which a merge once copied from its first shard.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.cli import main

pytestmark = pytest.mark.slow

def _comparable(folder: Path) -> dict:
    data = json.loads((folder / "results.json").read_text())
    for key in ("finished", "files_sha256"):
        data.pop(key)
    data["config"].pop("report")
    run = data["run"]
    for key in ("seconds", "shard", "merged_from", "schedule"):  # schedule: measured costs, and this process's clip count
        run.pop(key, None)
    run["decode"] = {k: v for k, v in run["decode"].items() if "seconds" not in k and "time" not in k}
    for backend in data["backends"]:
        for key in ("latency_ms", "mean_ms", "p50_ms", "p95_ms", "clips_per_s"):
            backend.pop(key, None)
    return data


def _differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:120]} != {str(b)[:120]}"]


def test_two_shards_merged_equal_one_run_with_every_followup(demo_artifacts, tmp_path):
    """A run that fails two ways: onnxruntime under an atol no FP32 pair meets (localized), and onnxruntime-int8
    under atol 1e-3 and rtol 0 (advised); the INT8 record comes from the train clips."""
    base = ["run", "--paddle-model", str(demo_artifacts.paddle_model.model_file), "--onnx", str(demo_artifacts.onnx),
            "--clips", str(demo_artifacts.val_list), "--backends", "paddle,onnxruntime,onnxruntime-int8",
            "--calibration", str(demo_artifacts.train_list), "--localize", "--advise",
            "--tol", "onnxruntime.atol=1e-9", "--tol", "onnxruntime.rtol=0",
            "--tol", "onnxruntime-int8.atol=1e-3", "--tol", "onnxruntime-int8.rtol=0"]
    whole = main([*base, "--report", str(tmp_path / "whole")])
    shards = [main([*base, "--shard", f"{i}/2", "--report", str(tmp_path / f"s{i}")]) for i in (1, 2)]
    merged = main(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--report", str(tmp_path / "merged")])
    assert whole == merged == 1 and set(shards) <= {0, 1}
    one, other = _comparable(tmp_path / "whole"), _comparable(tmp_path / "merged")
    assert one["diagnosis"] and one["advice"] and one["int8"] and one["hops"]  # the run really had every follow-up
    assert _differences(one, other) == []


def test_shards_from_other_machines_keep_each_environment():
    """A gate that travels: shards run on two machines are merged; the record does not claim the first for both."""
    from parity.merge import _environment

    same = {"cpu": "AMD EPYC", "cpu_features": "avx avx2", "onnxruntime": "1.23.2"}
    other = {**same, "cpu_features": "avx avx2 avx512f avx512_bf16"}
    assert _environment([{"environment": same}, {"environment": dict(same)}]) == same
    merged = _environment([{"environment": same}, {"environment": other}])
    assert merged["cpu_features"] == "avx avx2" and merged["per_shard"] == [same, other]
