"""Which step of the chain broke parity: the training checkpoint as a backend, the hop matrix,
preprocessing attribution, and a repro bundle that reruns the failure in a fresh shell."""
import dataclasses
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from parity.run import run

pytestmark = pytest.mark.slow


@pytest.fixture()
def chain_config(demo_artifacts, demo_run_config, tmp_path):
    return dataclasses.replace(demo_run_config, weights=str(demo_artifacts.trained / "model.pdparams"), backends=["paddle", "onnxruntime"],
                               report=str(tmp_path / "r"))


def _hops(result):
    return [(h["from"], h["to"], h["passed"]) for h in result.hops]


def test_the_checkpoint_matches_the_exported_program(chain_config, parity_cache):
    result = run(chain_config, cache=parity_cache)
    dygraph = next(c for c in result.comparisons if c.backend == "paddle-dygraph")
    assert dygraph.passed and dygraph.max_abs < 1e-4 and result.verdict == "pass"
    assert _hops(result) == [("paddle-dygraph", "paddle", True), ("paddle", "onnxruntime", True)]
    assert result.first_failing_hop is None
    assert result.hop_matrix["backends"] == ["paddle-dygraph", "paddle", "onnxruntime"]
    assert any("paddle-dygraph (the training checkpoint) runs" in n for n in result.notes)


def test_a_clean_run_has_no_failing_hop_and_judges_fp16_hops_at_fp16(clean_run):
    hops = {(h["from"], h["to"]): h for h in clean_run.hops}
    assert list(hops) == [("paddle", "onnxruntime"), ("onnxruntime", "onnxruntime-fp16")]
    assert clean_run.first_failing_hop is None and all(h["passed"] for h in hops.values())
    # a hop is judged at its lower precision: at fp32, FP16's own rounding would fail this hop
    assert hops[("paddle", "onnxruntime")]["precision"] == "fp32" and hops[("onnxruntime", "onnxruntime-fp16")]["precision"] == "fp16"


def test_a_checkpoint_changed_after_export_fails_the_first_hop(chain_config, demo_artifacts, parity_cache, tmp_path):
    import paddle

    state = paddle.load(str(demo_artifacts.trained / "model.pdparams"))
    key = next(k for k in state if k.endswith("_variance"))
    state[key] = state[key] * 4.0  # a BN running variance changed after the export
    folder = tmp_path / "ckpt"
    folder.mkdir()
    paddle.save(state, str(folder / "model.pdparams"))
    shutil.copy(demo_artifacts.trained / "model_spec.json", folder / "model_spec.json")
    result = run(dataclasses.replace(chain_config, weights=str(folder / "model.pdparams")), cache=parity_cache)
    assert result.first_failing_hop["from"] == "paddle-dygraph" and result.first_failing_hop["to"] == "paddle"
    assert _hops(result)[1] == ("paddle", "onnxruntime", True)


def test_a_perturbed_onnx_fails_the_static_to_onnx_hop(chain_config, defective_onnx, parity_cache):
    result = run(dataclasses.replace(chain_config, onnx=str(defective_onnx("conv_weight_x1.05"))), cache=parity_cache)
    assert _hops(result) == [("paddle-dygraph", "paddle", True), ("paddle", "onnxruntime", False)]
    assert result.first_failing_hop["from"] == "paddle" and result.first_failing_hop["max_abs"] > 1e-2


def test_a_checkpoint_of_another_class_count_is_an_error(chain_config, parity_cache, tmp_path):
    import paddle

    from parity.errors import HarnessError

    state = paddle.load(str(Path(chain_config.weights)))
    state = {k: (v[:, :3] if k.endswith("fc.weight") else v[:3] if k.endswith("fc.bias") else v) for k, v in state.items()}
    folder = tmp_path / "c3"
    folder.mkdir()
    paddle.save(state, str(folder / "model.pdparams"))
    shutil.copy(Path(chain_config.weights).parent / "model_spec.json", folder / "model_spec.json")
    result = run(dataclasses.replace(chain_config, weights=str(folder / "model.pdparams")), cache=parity_cache)
    dygraph = next(b for b in result.backends if b.name == "paddle-dygraph")
    assert dygraph.status == "error" and "fc.weight" in dygraph.reason and "mis-shaped" in dygraph.reason
    with pytest.raises(HarnessError, match="training checkpoint not found"):
        run(dataclasses.replace(chain_config, weights=str(tmp_path / "none.pdparams")), cache=parity_cache)


def _video(path: Path, width: int, height: int, frames: int = 16) -> Path:
    from fixtures.faults import _frames, _write

    return _write(path, _frames(np.random.default_rng(width), frames, height, width))


def test_preprocessing_attribution(demo_run_config, parity_cache, tmp_path, decode_log):
    # 16:9 videos: the C++ path keeps the aspect ratio where predict.py forces 4:3, so the logits move
    wide = [_video(tmp_path / f"wide{i}.mp4", 320, 180) for i in range(3)]
    # frames already 4:3 at the scale size (170x128 for the demo's crop of 112): both paths skip the resize
    exact = [_video(tmp_path / f"exact{i}.mp4", 170, 128) for i in range(3)]
    for name, videos in (("wide", wide), ("exact", exact)):
        listing = tmp_path / f"{name}.txt"
        listing.write_text("".join(f"{v} 0\n" for v in videos))
        cfg = dataclasses.replace(demo_run_config, clips=str(listing), preprocess="paddlevideo,cpp", backends=["paddle", "onnxruntime"],
                                  report=str(tmp_path / name))
        result = run(cfg, cache=parity_cache)
        (attribution,) = result.preprocessing_attribution
        assert attribution["variant"] == "cpp" and attribution["clips"] == 3
        assert result.run["decode"]["decoded"] == 3
        # both paths from the same decoded frames: each clip went through the decoder once, wherever it was decoded
        decodes = Counter(path for _, path in decode_log() if Path(path).parent == tmp_path and Path(path).name.startswith(name))
        assert decodes == {str(v.resolve()): 1 for v in videos}, decodes
        if name == "wide":
            assert attribution["max_abs"] > 1e-3
        else:
            # Bitwise 0.0: both paths skip the resize, so the reference's two lanes get the very same tensor, and two
            # runners of one backend in one process, with the same threads, compute the same logits from it.
            assert attribution["max_abs"] == 0.0 and attribution["top1_flips"] == 0
        assert [c.backend for c in result.comparisons] == ["onnxruntime"]  # attribution never enters the verdict


def test_reproduce_sh_reruns_the_same_failing_numbers_in_a_fresh_shell(demo_run_config, defective_onnx, parity_cache, tmp_path):
    import sys

    from parity.report import write_report

    cfg = dataclasses.replace(demo_run_config, onnx=str(defective_onnx("conv_weight_x1.05")), backends=["paddle", "onnxruntime"],
                              localize=True, report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    write_report(result, cfg.report)
    repro = tmp_path / "r" / "repro"
    assert sorted(p.name for p in repro.iterdir()) == ["artifacts.json", "diagnosis.json", "environment.json", "inputs", "logits.npz",
                                                       "parity.toml", "reproduce.sh"]
    moved = tmp_path / "attached-to-an-issue"
    shutil.copytree(repro, moved)  # the bundle works wherever it is unpacked
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PARITY_CACHE_DIR": str(parity_cache.root)}
    proc = subprocess.run(["bash", str(moved / "reproduce.sh")], cwd="/", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    rerun = json.loads((moved / "rerun" / "results.json").read_text())
    assert rerun["run"]["decode"]["decoded"] == 0  # saved tensors, nothing decoded
    original = {Path(c.path).stem: c.max_abs for c in next(c for c in result.comparisons if c.backend == "onnxruntime").clips}
    (again,) = rerun["comparisons"]
    assert again["backend"] == "onnxruntime" and not again["passed"]
    for clip in again["clips"]:
        stem = Path(clip["path"]).stem.split("_", 1)[1]
        assert clip["max_abs"] == pytest.approx(original[stem], rel=1e-6)
    assert os.access(moved / "reproduce.sh", os.X_OK)


def test_inputs_of_the_wrong_shape_are_clip_errors(demo_run_config, parity_cache, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((1, 8, 3, 112, 112), np.float32))
    np.save(folder / "b.npy", np.zeros((1, 16, 3, 224, 224), np.float32))
    result = run(dataclasses.replace(demo_run_config, clips=str(folder), backends=["paddle", "onnxruntime"], report=str(tmp_path / "r")),
                 cache=parity_cache)
    errors = {Path(c.path).name: c.error for c in result.clips if c.error}
    assert list(errors) == ["b.npy"] and "a saved input must be float32 [1, 8, 3, 112, 112]" in errors["b.npy"]
