"""Every input signature PaddleVideo's RGB recognizers deploy with, through a whole run: the helper's recipe decodes
real H.264 clips, every runner is fed ``{input name: array}`` in the model's order, a model's views are compared per
view and aggregated, and a conv weight x1.05 in the ONNX fails the gate.

The tiny models are ``fixtures/signatures.py``'s. Each signature's recipe is its helper's (``parity.recipes.make``)
at the tiny model's sizes, except ``ntchw_views_in_n``: no stock helper folds views into N, so a stand-in recipe
(PP-TSM's preprocessing, three views: as is, mirrored, flipped) gives it its ``[3, T, 3, H, W]`` per clip.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import av
import numpy as np
import pytest

from fixtures.defects import scale_conv_weight
from parity.artifacts.model_files import InputSpec, model_inputs
from parity.backends import ModelArtifacts
from parity.backends.registry import input_profile
from parity.config import RunConfig
from parity.engines.local import batch_arrays, feed_dict, logit_rows
from parity.helper_inputs import cache_get, cache_put
from parity.inputs import TensorCache
from parity.recipes import Recipe, make
from parity.report import write_report
from parity.run import run

BACKENDS = ["paddle", "onnxruntime", "openvino"]


@dataclass(frozen=True)
class ThreeViewsInN(Recipe):
    """Stand-in: PP-TSM's preprocessing of the clip, then three views of it folded into N (one output row each)."""

    helper: ClassVar[str] = "test_ThreeViewsInN_helper"
    layouts: ClassVar[tuple[str, ...]] = ("ntchw",)

    @property
    def views(self) -> int:
        return 3

    def preprocess(self, path):
        (x,) = make("ppTSM_Inference_helper", self.params).preprocess(path)  # [1, T, 3, S, S]
        return [np.ascontiguousarray(np.concatenate([x, x[..., ::-1], x[..., ::-1, :]]))]


def recipe_for(name: str) -> Recipe:
    """The recipe of a signature's helper, at the tiny model's sizes."""
    return {
        "ntchw_views": lambda: make("ppTSN_Inference_helper", {"num_seg": 3, "short_size": 36, "target_size": 32}),
        "ntchw_views_in_n": lambda: ThreeViewsInN({"num_seg": 4, "short_size": 36, "target_size": 32}),
        "ncthw": lambda: make("TimeSformer_Inference_helper", {"num_seg": 4, "short_size": 32, "target_size": 32}),
        "slowfast": lambda: make("SlowFast_Inference_helper", {"num_frames": 8, "alpha": 4, "target_size": 32}),
    }[name]()


@pytest.fixture(scope="module")
def h264_clips(tmp_path_factory) -> Path:
    """Four small H.264 clips (moving shapes on a textured ground, 48 frames, 64x48) and their list."""
    folder = tmp_path_factory.mktemp("h264")
    rng = np.random.default_rng(7)
    lines = []
    for i in range(4):
        path = folder / f"clip{i}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            ground = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for t in range(48):
                frame = ground.copy()
                x, y = (5 + 2 * t + 9 * i) % 50, (4 + t * (i + 1)) % 34
                frame[y:y + 14, x:x + 14] = (255 - 60 * i, 40 * i, 200)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        lines.append(f"{path.name} {i}")
    listing = folder / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _cfg(model, onnx: Path, clips: Path, report: Path, **kw) -> RunConfig:
    return RunConfig(paddle_model=str(model.paddle.model_file), onnx=str(onnx), clips=str(clips), backends=list(BACKENDS),
                     report=str(report), workers=0, lint="off", **kw)


SIGNATURES = ["ntchw_views", "ntchw_views_in_n", "ncthw", "slowfast"]


@pytest.mark.parametrize("name", SIGNATURES)
def test_a_clean_model_passes_on_every_runner(name, signature_models, h264_clips, parity_cache, tmp_path):
    model, recipe = signature_models[name], recipe_for(name)
    result = run(_cfg(model, model.onnx, h264_clips, tmp_path, batch_size=2), cache=parity_cache, recipe=recipe)
    assert result.verdict == "pass", [f.text for f in result.failures]
    assert [(b.name, b.status) for b in result.backends] == [(b, "ok") for b in BACKENDS]
    assert len(result.comparisons) == 2 and all(c.clips_compared == 4 for c in result.comparisons)
    fed = {b.name: b.batch_shapes for b in result.backends}["onnxruntime"]
    inputs = model_inputs(ModelArtifacts(onnx=model.onnx), recipe.layouts)
    assert [i.name for i in inputs] == list(model.inputs)
    # every input fed at the batch of 2 clips, each clip its rows per clip (views folded into N) on the batch axis
    assert [s[0] for s in fed] == [2 * model.rows_per_clip] * len(model.inputs)
    assert result.preprocess["recipe"]["helper"] == recipe.helper
    assert result.preprocess["views_per_clip"] == model.rows_per_clip
    assert [i["name"] for i in result.preprocess["inputs"]] == list(model.inputs)
    if model.rows_per_clip > 1:
        assert [c.backend for c in result.view_comparisons] == ["onnxruntime[views]", "openvino[views]"]
        per_view = result.view_comparisons[0]
        assert per_view.views == 3 and per_view.clips_compared == 12 and per_view.passed
        assert [c.view for c in per_view.clips[:3]] == [0, 1, 2]
        assert all(c.views == 3 for c in result.clips)
        # the aggregated row per clip is the mean over its views (PP-TSM's Base helper postprocess)
        rows = result.view_logits["paddle"]
        np.testing.assert_allclose(result.logits["paddle"], rows.mean(axis=1), rtol=1e-6)
    else:
        assert result.view_comparisons == [] and result.view_logits == {}


@pytest.mark.parametrize("name", SIGNATURES)
def test_a_scaled_conv_weight_fails_and_the_report_shows_views(name, signature_models, h264_clips, parity_cache, tmp_path):
    model, recipe = signature_models[name], recipe_for(name)
    defective = tmp_path / "defective.onnx"
    scale_conv_weight(model.onnx, defective, 1.05)
    result = run(_cfg(model, defective, h264_clips, tmp_path / "r"), cache=parity_cache, recipe=recipe)
    assert result.verdict == "fail"
    failing = {c.backend for c in result.comparisons if not c.passed}
    assert {"onnxruntime", "openvino"} <= failing
    folder = tmp_path / "report"
    write_report(result, folder)
    data = json.loads((folder / "results.json").read_text())
    html = (folder / "index.html").read_text()
    assert data["preprocess"]["views_per_clip"] == model.rows_per_clip
    with np.load(folder / "logits.npz") as npz:
        assert npz["onnxruntime"].shape == (4, model.num_classes)
        if model.rows_per_clip > 1:
            assert npz["onnxruntime[views]"].shape == (4, 3, model.num_classes)
    if model.rows_per_clip > 1:
        views = {c["backend"]: c for c in data["view_comparisons"]}
        assert not views["onnxruntime[views]"]["passed"] and views["onnxruntime[views]"]["views"] == 3
        assert {c["view"] for c in views["onnxruntime[views]"]["clips"]} == {0, 1, 2}
        assert any(f["text"].startswith("onnxruntime[views] vs paddle[views]") and f["backend"] == "onnxruntime" for f in data["failures"])
        assert all(c["views"] == 3 for c in data["clips"])
        assert 'id="views"' in html and "onnxruntime[views]" in html and 'id="failing-views"' in html
    else:
        assert data["view_comparisons"] == [] and 'id="views"' not in html


def test_a_view_failure_alone_fails_the_gate():
    """Views that disagree but average out: the aggregated rows pass, the per-view comparison fails the gate."""
    from parity.backends.registry import BACKENDS as REGISTRY
    from parity.backends.registry import Lane, LaneKind, Selection, Status
    from parity.results import BackendRecord
    from parity.verdict import judge

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 2, 5)).astype(np.float32)
    swapped = ref.copy()
    swapped[:, 0] += 0.5
    swapped[:, 1] -= 0.5  # the mean over the 2 views is unchanged
    selection = Selection("paddle", [Lane("paddle", REGISTRY["paddle"]), Lane("onnxruntime", REGISTRY["onnxruntime"], against="paddle")])
    records = [BackendRecord(n, "fp32", "", Status.OK, kind=LaneKind.MAIN) for n in ("paddle", "onnxruntime")]
    logits = {"paddle": ref.mean(1), "onnxruntime": swapped.mean(1)}
    judgement = judge(selection, records, logits, ["a", "b", "c"], [0, 1, 2], RunConfig(),
                      view_logits={"paddle": ref, "onnxruntime": swapped})
    assert judgement.comparisons[0].passed
    assert not judgement.view_comparisons[0].passed and judgement.verdict == "fail"
    assert any(f.backend == "onnxruntime" and "[views]" in f.text for f in judgement.failures)


def test_outputs_are_split_per_clip_and_inputs_concatenated_per_input():
    a = (np.zeros((1, 3, 2, 4, 4), np.float32), np.ones((1, 3, 8, 4, 4), np.float32))
    b = (np.full((1, 3, 2, 4, 4), 2, np.float32), np.full((1, 3, 8, 4, 4), 3, np.float32))
    slow, fast = batch_arrays([a, b])
    assert slow.shape == (2, 3, 2, 4, 4) and fast.shape == (2, 3, 8, 4, 4) and fast[1].max() == 3
    assert list(feed_dict(("slow_input", "fast_input"), (slow, fast))) == ["slow_input", "fast_input"]
    with pytest.raises(RuntimeError, match="takes 1"):
        feed_dict(("x",), (slow, fast))
    out = {"logits": np.arange(2 * 3 * 5, dtype=np.float32).reshape(6, 5)}
    rows = logit_rows(out, 2, 3)
    assert rows.shape == (2, 3, 5) and rows[1, 0, 0] == 15
    assert logit_rows({"y": np.ones((2, 5))}, 2).shape == (2, 5)  # PP-TSM's one row per clip, as before
    with pytest.raises(RuntimeError, match="2 clip"):
        logit_rows(out, 2, 2)


def test_tensorrt_profiles_per_input():
    """TensorRT's optimization profile covers every input: one clip's rows (its views) to the run's batch of clips."""
    from parity.backends.tensorrt import EngineSpec

    art = ModelArtifacts(inputs=(InputSpec("slow_input", (-1, 3, 2, 32, 32), "ncthw"), InputSpec("fast_input", (-1, 3, 8, 32, 32), "ncthw")),
                         batch=4, input_name="slow_input")
    profiles = art.profiles()
    assert profiles == {"slow_input": ((1, 3, 2, 32, 32), (4, 3, 2, 32, 32), (4, 3, 2, 32, 32)),
                        "fast_input": ((1, 3, 8, 32, 32), (4, 3, 8, 32, 32), (4, 3, 8, 32, 32))}
    assert input_profile("x", (-1, 4, 3, 32, 32), 3, 2) == ((3, 4, 3, 32, 32), (6, 4, 3, 32, 32), (6, 4, 3, 32, 32))
    (name, (mn, opt, mx)), (name2, shapes2) = profiles.items()
    spec = EngineSpec("a" * 64, "10.0.0", "gpu", "fp32", name, mn, opt, mx, extra_inputs=((name2, *shapes2),))
    assert [p[0] for p in spec.input_profiles()] == ["slow_input", "fast_input"]
    assert spec.input_profiles()[1][3] == (4, 3, 8, 32, 32)
    one = EngineSpec("a" * 64, "10.0.0", "gpu", "fp32", "data_batch_0", (1, 8, 3, 224, 224), (1, 8, 3, 224, 224), (1, 8, 3, 224, 224))
    assert "extra_inputs" not in one.to_dict()  # PP-TSM's engine keys are what they were
    pptsm = ModelArtifacts(num_seg=8, size=224, batch=2)
    assert pptsm.input_names == ("data_batch_0",) and pptsm.profiles()["data_batch_0"][2] == (2, 8, 3, 224, 224)


def test_the_tensor_cache_keeps_several_inputs_with_their_proof(tmp_path):
    cache = TensorCache(tmp_path)
    recipe = make("SlowFast_Inference_helper", {"num_frames": 8, "alpha": 4, "target_size": 32})
    tensor = (np.ones((1, 3, 2, 4, 4), np.float32), np.zeros((1, 3, 8, 4, 4), np.float32))
    cache_put(cache, "f" * 64, recipe, "pyav", tensor)
    got = cache_get(cache, "f" * 64, recipe, "pyav")
    assert isinstance(got, tuple) and [a.shape for a in got] == [a.shape for a in tensor]
    path = cache.path("f" * 64, recipe, "pyav")
    with np.load(path) as npz:  # one array swapped for another: the entry no longer proves out
        arrays = {k: npz[k] for k in npz.files}
    arrays["tensor_1"] = arrays["tensor_1"] + 1
    np.savez(path, **arrays)
    assert cache_get(cache, "f" * 64, recipe, "pyav") is None and "does not match" in cache.take_problems()[0]


def _pv_yaml(folder: Path, helper: str, classes: int, **inference) -> Path:
    """A PaddleVideo-style config: the class count and the INFERENCE helper with the tiny model's sizes."""
    path = folder / f"{helper}.yaml"
    lines = ["MODEL:", "    head:", f"        num_classes: {classes}", "INFERENCE:", f"    name: '{helper}'"]
    path.write_text("\n".join(lines + [f"    {k}: {v}" for k, v in inference.items()]) + "\n")
    return path


def test_a_run_with_pv_config_decodes_with_its_helper(signature_models, h264_clips, parity_cache, tmp_path, capsys):
    """`parity run --pv-config` with SlowFast's config: its recipe decodes, both inputs are fed by name."""
    from parity.cli import main

    model = signature_models["slowfast"]
    config = _pv_yaml(tmp_path, "SlowFast_Inference_helper", model.num_classes, num_frames=8, alpha=4, target_size=32)
    report = tmp_path / "report"
    code = main(["run", "--paddle-model", str(model.paddle.model_file), "--onnx", str(model.onnx), "--clips", str(h264_clips),
                 "--backends", "paddle,onnxruntime", "--pv-config", str(config), "--workers", "0", "--lint", "off",
                 "--report", str(report), "--cache", str(parity_cache.root)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((report / "results.json").read_text())
    assert data["preprocess"]["recipe"]["helper"] == "SlowFast_Inference_helper"
    assert [i["name"] for i in data["preprocess"]["inputs"]] == ["slow_input", "fast_input"]
    fed = next(b for b in data["backends"] if b["name"] == "onnxruntime")["batch_shapes"]
    assert fed == [[1, 3, 2, 32, 32], [1, 3, 8, 32, 32]]


def test_golden_outputs_of_a_helper_gate_only_its_own_preprocessing(signature_models, h264_clips, parity_cache, tmp_path, capsys):
    """Golden logits saved from a SlowFast run gate a later run with the same config; a config that samples other
    frames (sampling_rate 1 for 2: the same shapes, other tensors) or PP-TSM's own path is one line, exit 2."""
    from parity.cli import main

    model = signature_models["slowfast"]
    same = _pv_yaml(tmp_path, "SlowFast_Inference_helper", model.num_classes, num_frames=8, alpha=4, target_size=32)
    base = ["run", "--onnx", str(model.onnx), "--clips", str(h264_clips), "--workers", "0", "--lint", "off", "--cache", str(parity_cache.root)]
    assert main([*base, "--paddle-model", str(model.paddle.model_file), "--backends", "paddle,onnxruntime", "--pv-config", str(same),
                 "--report", str(tmp_path / "saved")]) == 0
    assert main(["golden", "save", str(tmp_path / "saved"), "--to", str(tmp_path / "golden")]) == 0
    gated = [*base, "--golden", str(tmp_path / "golden"), "--backends", "onnxruntime"]
    assert main([*gated, "--pv-config", str(same), "--report", str(tmp_path / "again")]) == 0
    (tmp_path / "other").mkdir()
    other = _pv_yaml(tmp_path / "other", "SlowFast_Inference_helper", model.num_classes, num_frames=8, alpha=4, target_size=32, sampling_rate=1)
    capsys.readouterr()
    assert main([*gated, "--pv-config", str(other), "--report", str(tmp_path / "other-run")]) == 2
    err = capsys.readouterr().err
    assert "golden outputs were computed with sampling_rate 2; this run's is 1 (SlowFast_Inference_helper)" in err, err
    assert main([*gated, "--report", str(tmp_path / "pptsm-run")]) == 2
    assert "computed with SlowFast_Inference_helper's preprocessing; this run uses PP-TSM's" in capsys.readouterr().err


def test_preprocess_writes_the_helpers_inputs_as_the_model_takes_them(signature_models, h264_clips, tmp_path, capsys):
    from parity.cli import main

    clip = h264_clips.parent / "clip0.mp4"
    slowfast = signature_models["slowfast"]
    config = _pv_yaml(tmp_path, "SlowFast_Inference_helper", slowfast.num_classes, num_frames=8, alpha=4, target_size=32)
    recipe = make("SlowFast_Inference_helper", {"num_frames": 8, "alpha": 4, "target_size": 32})
    want = recipe.preprocess(clip)
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "sf"), "--pv-config", str(config), "--onnx", str(slowfast.onnx)]) == 0
    with np.load(tmp_path / "sf.npz") as npz:  # names from the model, in its order
        assert list(npz.files) == ["slow_input", "fast_input"]
        assert all(np.array_equal(npz[n], w) for n, w in zip(npz.files, want))
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "plain.npz"), "--pv-config", str(config)]) == 0
    with np.load(tmp_path / "plain.npz") as npz:
        assert list(npz.files) == ["input_0", "input_1"]
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "x.npy"), "--pv-config", str(config)]) == 2
    assert "write an .npz" in capsys.readouterr().err
    tsf = signature_models["ncthw"]
    config = _pv_yaml(tmp_path, "TimeSformer_Inference_helper", tsf.num_classes, num_seg=4, short_size=32, target_size=32)
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "t.npy"), "--pv-config", str(config), "--onnx", str(tsf.onnx)]) == 0
    (want,) = make("TimeSformer_Inference_helper", {"num_seg": 4, "short_size": 32, "target_size": 32}).preprocess(clip)
    assert np.array_equal(np.load(tmp_path / "t.npy"), want) and want.shape == (1, 3, 12, 32, 32)
    assert main(["preprocess", str(clip), "-o", str(tmp_path / "t1.npz"), "--pv-config", str(config), "--onnx", str(tsf.onnx)]) == 0
    with np.load(tmp_path / "t1.npz") as npz:
        assert list(npz.files) == ["data_batch_0"] and np.array_equal(npz["data_batch_0"], want)


def test_a_users_program_gets_one_npz_array_per_input(signature_models, h264_clips, parity_cache, tmp_path):
    """--external with {tensor} on a two-input model: an .npz keyed by the model's input names, in its order."""
    import sys

    model = signature_models["slowfast"]
    program = tmp_path / "runner.py"
    program.write_text(
        "import sys\nimport numpy as np\nimport onnxruntime as ort\n"
        "with np.load(sys.argv[1]) as npz:\n    names, feed = list(npz.files), {k: npz[k] for k in npz.files}\n"
        "assert names == ['slow_input', 'fast_input'], names\n"
        "session = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider'])\n"
        "np.save(sys.argv[3], session.run(None, feed)[0].reshape(-1))\n")
    cfg = _cfg(model, model.onnx, h264_clips, tmp_path / "r", external={"mine": f"{sys.executable} {program} {{tensor}} {model.onnx} {{out}}"})
    cfg.backends = ["paddle"]
    result = run(cfg, cache=parity_cache, recipe=recipe_for("slowfast"))
    assert result.verdict == "pass", [f.text for f in result.failures]
    mine = next(c for c in result.comparisons if c.backend == "mine")
    assert mine.clips_compared == 4 and mine.max_abs < 1e-5


def test_the_ray_engine_feeds_several_inputs_and_views_as_the_local_one(signature_models, h264_clips, parity_cache, tmp_path):
    """Ray's decode tasks run the recipe, its actors get {name: array} and split views: the same logits as the local engine."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is part of [test]; this only skips outside it")
    results = {}
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the stand-in recipe travels by value: workers lack tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    try:
        for name in ("slowfast", "ntchw_views_in_n"):
            model = signature_models[name]
            cfg = _cfg(model, model.onnx, h264_clips, tmp_path / name, batch_size=2, engine="ray")
            cfg.backends = ["paddle", "onnxruntime"]
            results[name] = run(cfg, cache=parity_cache, recipe=recipe_for(name))
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    for name, result in results.items():
        model = signature_models[name]
        cfg = _cfg(model, model.onnx, h264_clips, tmp_path / f"{name}-local", batch_size=2)
        cfg.backends = ["paddle", "onnxruntime"]
        local = run(cfg, cache=parity_cache, recipe=recipe_for(name))
        assert result.verdict == local.verdict == "pass" and result.run["engine"] == "ray"
        for lane in ("paddle", "onnxruntime"):
            np.testing.assert_array_equal(result.logits[lane], local.logits[lane])
        assert result.view_logits.keys() == local.view_logits.keys()
        assert [c.backend for c in result.view_comparisons] == [c.backend for c in local.view_comparisons]


def test_two_shards_merged_judge_the_views_as_one_run(signature_models, h264_clips, parity_cache, tmp_path):
    """`parity merge` joins each lane's view rows (logits.npz NAME[views]) and judges them as an unsharded run does."""
    import dataclasses

    from parity.merge import merge_reports

    model, recipe = signature_models["ntchw_views_in_n"], recipe_for("ntchw_views_in_n")
    defective = tmp_path / "defective.onnx"
    scale_conv_weight(model.onnx, defective, 1.05)
    cfg = _cfg(model, defective, h264_clips, tmp_path / "whole")
    cfg.backends = ["paddle", "onnxruntime"]
    whole = run(cfg, cache=parity_cache, recipe=recipe)
    folders = []
    for i in (1, 2):
        folder = tmp_path / f"shard{i}"
        write_report(run(dataclasses.replace(cfg, report=str(folder)), cache=parity_cache, shard=f"{i}/2", recipe=recipe), folder)
        folders.append(folder)
    merged = merge_reports(folders)
    assert merged.verdict == whole.verdict == "fail"
    assert [dataclasses.asdict(c) for c in merged.view_comparisons] == [dataclasses.asdict(c) for c in whole.view_comparisons]
    assert [f.text for f in merged.failures] == [f.text for f in whole.failures]
    assert merged.notes[-1] == whole.notes[-1] and "not made for test_ThreeViewsInN_helper" in whole.notes[-1]
    assert [c.views for c in merged.clips] == [3] * 4


def test_the_schedule_measures_a_helpers_model_on_its_own_inputs(signature_models, h264_clips, parity_cache, tmp_path):
    """--schedule auto times each backend on the first clip: another helper's arrays, fed by input name."""
    from parity.artifacts import ArtifactCache
    from parity.clips import load_clips
    from parity.engines.costs import measure
    from parity.run.plan import plan

    model = signature_models["slowfast"]
    cfg = _cfg(model, model.onnx, h264_clips, tmp_path / "r")
    cfg.backends = ["paddle", "onnxruntime"]
    p = plan(cfg, ArtifactCache(tmp_path / "cache"), recipe=recipe_for("slowfast"))
    measured = measure(p.selection.lanes, p.art, load_clips(str(h264_clips))[0], p.recipe, 2)
    assert [c.name for c in measured.costs] == ["paddle", "onnxruntime"] and all(c.one > 0 for c in measured.costs)
