"""Recipes beyond PP-TSM: TimeSformer_Inference_helper and SlowFast_Inference_helper against PaddleVideo's own ops.

The reference is PaddleVideo's pipeline source (ppvideo 2.3.1 from PyPI, ``fixtures/paddlevideo.py``), its ops run
in the helper's order with the helper's arguments, on real H.264 videos of three sizes. The recipe must give the
same arrays, bit for bit.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from fixtures.faults import _frames, _write
from parity.preprocess import ClipError
from parity.recipes import make

PP_TIMESFORMER = {"mean": [0, 0, 0], "std": [1, 1, 1]}  # configs/recognition/pptimesformer: INFERENCE


@pytest.fixture(autouse=True)
def _keep_global_random():
    """These tests seed Python's global ``random`` (PaddleVideo's MultiCrop draws from it); later tests get it back."""
    state = random.getstate()
    yield
    random.setstate(state)


def _run(ops, results):
    for op in ops:
        results = op(results)
    return results


def timesformer_reference(pipelines, path, p) -> list[np.ndarray]:
    """TimeSformer_Inference_helper.preprocess, op for op (its PyAV branch computes with Paddle)."""
    decode, sample, aug = pipelines("decode"), pipelines("sample"), pipelines("augmentations", paddle=True)
    results = _run([
        decode.VideoDecoder(backend="pyav", mode="test", num_seg=p["num_seg"]),
        sample.Sampler(p["num_seg"], p["seg_len"], valid_mode=True, linspace_sample=True),
        aug.Normalization(p["mean"], p["std"], tensor_shape=[1, 1, 1, 3]),
        aug.Image2Array(data_format="cthw"),
        aug.JitterScale(p["short_size"], p["short_size"]),
        aug.UniformCrop(p["target_size"]),
    ], {"filename": str(path)})
    return [np.expand_dims(results["imgs"], axis=0).copy()]


def slowfast_reference(pipelines, path, p) -> list[np.ndarray]:
    """SlowFast_Inference_helper.preprocess, op for op."""
    sampler, aug = pipelines("decode_sampler"), pipelines("augmentations")
    results = _run([
        sampler.DecodeSampler(p["num_frames"], p["sampling_rate"], test_mode=True),
        aug.JitterScale(p["target_size"], p["target_size"]),
        aug.MultiCrop(p["target_size"]),
        aug.Image2Array(transpose=False),
        aug.Normalization([0.45, 0.45, 0.45], [0.225, 0.225, 0.225], tensor_shape=[1, 1, 1, 3]),
        aug.PackOutput(p["alpha"]),
    ], {"filename": str(path), "temporal_sample_index": 0, "spatial_sample_index": 0,
        "temporal_num_clips": 1, "spatial_num_clips": 1})
    return [np.expand_dims(item, axis=0).copy() for item in results["imgs"]]


def _assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32 and b.dtype == np.float32
        assert a.shape == b.shape
        assert np.array_equal(a, b), f"max abs difference {np.abs(a - b).max()}"


# ----------------------------------------------------------------------------- TimeSformer


@pytest.mark.parametrize("params", [{}, PP_TIMESFORMER], ids=["timesformer", "pp-timesformer"])
def test_timesformer_equals_paddlevideo_bit_for_bit(recipe_videos, ppvideo_pipelines, params):
    recipe = make("TimeSformer_Inference_helper", params)
    p = recipe.params
    for path in recipe_videos:
        ours = recipe.preprocess(path)
        _assert_same(ours, timesformer_reference(ppvideo_pipelines, path, p))
        assert ours[0].shape == (1, 3, 3 * p["num_seg"], p["target_size"], p["target_size"])
        assert len(ours) == len(recipe.layouts) == 1


def test_timesformer_defaults_views_and_layout():
    recipe = make("TimeSformer_Inference_helper", {"num_seg": 8, "target_size": 224})  # timesformer_k400's INFERENCE
    assert recipe.params == {"num_seg": 8, "seg_len": 1, "short_size": 224, "target_size": 224, "top_k": 1,
                             "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
    assert recipe.decoder == "pyav" and recipe.layouts == ("ncthw",)
    assert recipe.views == 1  # the graph averages its 3 views
    rows = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    assert np.array_equal(recipe.aggregate(rows), rows[0])


def test_paddle_bilinear_matches_paddle_on_odd_sizes():
    """The resize alone, on sizes the videos do not reach (up and down, one axis unchanged), against Paddle's kernel."""
    paddle = pytest.importorskip("paddle")
    from parity.recipes.ops import paddle_bilinear  # TimeSformer's JitterScale

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 301, 397)).astype(np.float32)
    sizes = [(224, 298), (20, 29), (301, 100), (61, 397), (1, 7)] + [tuple(rng.integers(2, 700, size=2)) for _ in range(12)]
    for h, w in sizes:
        want = paddle.nn.functional.interpolate(paddle.to_tensor(x), size=(h, w), mode="bilinear", align_corners=False).numpy()
        got = paddle_bilinear(x, h, w)
        assert np.array_equal(got, want), f"{(h, w)}: max abs difference {np.abs(got - want).max()}"


# ----------------------------------------------------------------------------- SlowFast


def test_slowfast_equals_paddlevideo_bit_for_bit(recipe_videos, ppvideo_pipelines):
    """PaddleVideo's crop is random (MultiCrop without test_mode): seeded with the recipe's seed, it is the recipe's."""
    from parity.recipes.slowfast import CROP_SEED

    recipe = make("SlowFast_Inference_helper", {"num_frames": 32, "alpha": 8, "target_size": 256})  # slowfast.yaml
    p = recipe.params
    for path in recipe_videos:
        ours = recipe.preprocess(path)
        random.seed(CROP_SEED)
        _assert_same(ours, slowfast_reference(ppvideo_pipelines, path, p))
        slow, fast = ours
        assert slow.shape == (1, 3, p["num_frames"] // p["alpha"], 256, 256)
        assert fast.shape == (1, 3, p["num_frames"], 256, 256)
        assert len(recipe.layouts) == 2


def test_slowfast_crop_is_fixed_where_paddlevideos_is_random(recipe_videos, ppvideo_pipelines):
    recipe = make("SlowFast_Inference_helper")
    path = recipe_videos[0]  # 320x240: scaled to 341x256, so 86 possible crops
    random.seed(1234)
    first = recipe.preprocess(path)
    random.seed(99)
    assert all(np.array_equal(a, b) for a, b in zip(first, recipe.preprocess(path)))
    theirs = []
    for seed in range(6):
        random.seed(seed)
        theirs.append(slowfast_reference(ppvideo_pipelines, path, recipe.params)[1])
    assert any(not np.array_equal(theirs[0], other) for other in theirs[1:])


def test_slowfast_defaults_views_and_layouts():
    recipe = make("SlowFast_Inference_helper")
    assert recipe.params == {"num_frames": 32, "sampling_rate": 2, "target_size": 256, "alpha": 8, "top_k": 1}
    assert recipe.decoder == "decord" and recipe.layouts == ("ncthw", "ncthw") and recipe.views == 1


def test_a_video_shorter_than_slowfasts_clip_fails_in_both(ppvideo_pipelines, tmp_path):
    """40 frames at 25 fps: the clip wants 53, the sampler asks for frame 40, which decord does not have."""
    path = _write(tmp_path / "short.mp4", _frames(np.random.default_rng(3), 40, 112, 160))
    recipe = make("SlowFast_Inference_helper")
    with pytest.raises(ClipError, match="asks for frame 40"):
        recipe.preprocess(path)
    with pytest.raises(Exception):  # noqa: B017  (decord's own error type)
        slowfast_reference(ppvideo_pipelines, path, recipe.params)


def test_timesformer_without_a_stream_duration_and_in_avi(ppvideo_pipelines, tmp_path):
    """Matroska gives PyAV no stream duration (PaddleVideo then decodes the whole video); AVI/MPEG-4 has one."""
    import av

    rng = np.random.default_rng(7)
    mkv = _write(tmp_path / "whole.mkv", _frames(rng, 30, 120, 160))
    avi = _write(tmp_path / "part.avi", _frames(rng, 30, 150, 110), codec="mpeg4")
    with av.open(str(mkv)) as container:
        assert container.streams.video[0].duration is None
    recipe = make("TimeSformer_Inference_helper")
    for path in (mkv, avi):
        _assert_same(recipe.preprocess(path), timesformer_reference(ppvideo_pipelines, path, recipe.params))
