"""parity/recipes/ against PaddleVideo's own inference helpers, run from PaddleVideo's source (ppvideo 2.3.1).

The reference is the helper class itself: its class statement is taken from ``tools/utils.py`` (``ast``) and run
over PaddleVideo's pipeline ops, loaded by path (``fixtures/paddlevideo.py``), so its ``preprocess`` is
PaddleVideo's code line for line. Each recipe's tensor must equal it on real H.264 videos of three sizes.

Fixtures first (shared with the other recipe tests below them).
"""
from __future__ import annotations

import ast
import inspect
import typing
from abc import abstractmethod

import numpy as np
import pytest

from fixtures.paddlevideo import PipelineLoader
from parity.recipes import make

# The pipeline files the helpers' ops live in; append a file when a helper needs one more.
PIPELINE_FILES = ("decode", "sample", "augmentations")


class _NoOpRegistry:
    def register(self, name=None):
        return (lambda cls: cls) if name is None or isinstance(name, str) else name


@pytest.fixture(scope="session")
def paddle_pipelines(ppvideo_source):
    """PaddleVideo's pipeline files loaded with the real ``paddle`` (the PyAV helpers' ops call ``paddle.to_tensor``
    and ``F.interpolate``; CenterCrop checks ``paddle.Tensor``), in a loader of their own so no stubbed copy is reused."""
    pytest.importorskip("paddle")
    import paddle  # noqa: F401  (imported before the files, so they bind the real one)

    return PipelineLoader(ppvideo_source)


@pytest.fixture(scope="session")
def ppvideo_helpers(ppvideo_source, paddle_pipelines) -> dict[str, type]:
    """PaddleVideo's ``*_Inference_helper`` classes from ``tools/utils.py``, by name.

    Only the class statements are run (the module imports half of PaddleVideo), in a namespace holding the
    pipeline ops, numpy and os, with ``@INFERENCE.register()`` a no-op.
    """
    import os

    source = (ppvideo_source.parent / "tools" / "utils.py").read_text()
    tree = ast.parse(source)
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name.endswith("_Inference_helper")]
    namespace = {"np": np, "os": os, "List": typing.List, "abstractmethod": abstractmethod, "INFERENCE": _NoOpRegistry()}
    for name in PIPELINE_FILES:
        namespace |= {k: v for k, v in vars(paddle_pipelines(name)).items() if inspect.isclass(v)}
    helpers: dict[str, type] = {}
    for node in classes:
        try:
            exec(compile(ast.Module(body=[node], type_ignores=[]), "ppvideo/tools/utils.py", "exec"), namespace)
        except NameError:  # a helper whose class statement needs more than the pipeline ops (none of the RGB ones)
            continue
        helpers[node.name] = namespace[node.name]
    return helpers


# Beside recipe_videos (all at most 320 pixels): larger frames that every helper scales down, 16:9.
LARGE_VIDEO_SIZES = ((640, 360, 48), (1280, 720, 40))


@pytest.fixture(scope="session")
def large_videos(tmp_path_factory) -> list:
    """Real H.264 videos at 640x360 and 1280x720: a gradient drifting under a moving block, with light noise."""
    from fixtures.faults import _write

    folder = tmp_path_factory.mktemp("recipe_large_videos")
    rng = np.random.default_rng(42)
    videos = []
    for w, h, n in LARGE_VIDEO_SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        frames = np.empty((n, h, w, 3), dtype=np.uint8)
        for i in range(n):
            frames[i, ..., 0] = (xx + 9 * i) % 256
            frames[i, ..., 1] = (yy * 255 // h + 5 * i) % 256
            frames[i, ..., 2] = 128
            frames[i] += rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
            x = (i * w // 48) % (w - h // 4)
            frames[i, h // 3:h // 3 + h // 4, x:x + h // 4] = 250
        videos.append(_write(folder / f"large_{w}x{h}.mp4", frames))
    return videos


@pytest.fixture()
def np_int(monkeypatch):
    """``np.int`` (removed in NumPy 1.24) as the builtin ``int`` it was an alias of: PaddleVideo's Sampler with
    ``frame_interval`` (VideoSwin) still calls ``astype(np.int)``."""
    monkeypatch.setattr(np, "int", int, raising=False)


def reference(helpers: dict[str, type], helper: str, params: dict, path) -> list[np.ndarray]:
    instance = helpers[helper](**params)
    return [np.asarray(x) for x in instance.preprocess(str(path))]


def assert_bit_equal(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
        if not np.array_equal(a, b):
            diff = np.abs(a.astype(np.float64) - b)
            pytest.fail(f"{int((diff > 0).sum())} of {a.size} values differ, max {diff.max():.3g}")


# ----------------------------------------------------------------------------- ppTSM, ppTSN, VideoSwin, TokenShift

OWN = ("ppTSM_Inference_helper", "ppTSN_Inference_helper", "VideoSwin_Inference_helper", "TokenShift_Inference_helper")


@pytest.mark.parametrize("helper", OWN)
def test_defaults_are_the_helpers_own(helper, ppvideo_helpers):
    signature = inspect.signature(ppvideo_helpers[helper].__init__)
    theirs = {k: p.default for k, p in signature.parameters.items() if k != "self"}
    assert type(make(helper)).defaults == theirs


# (helper, params): the defaults, and the configs' INFERENCE sections where they differ.
BIT_EXACT = [
    ("ppTSM_Inference_helper", {}),
    ("ppTSM_Inference_helper", {"num_seg": 16}),  # pptsm/v2/pptsm_lcnet_k400_16frames_uniform
    ("ppTSM_Inference_helper", {"num_seg": 50, "short_size": 192, "target_size": 172}),  # movinet_k400_frame
    ("ppTSN_Inference_helper", {}),
    ("VideoSwin_Inference_helper", {}),  # 4 x 32 frames
    ("VideoSwin_Inference_helper", {"num_seg": 1, "seg_len": 32, "short_size": 256}),  # videoswin_{base,small}_k400_videos
    ("VideoSwin_Inference_helper", {"num_seg": 2, "seg_len": 8, "frame_interval": 3}),  # clips spread over every video
    ("TokenShift_Inference_helper", {}),
    ("TokenShift_Inference_helper", {"num_seg": 2}),  # a 53-frame window at 25 fps: the pts window cuts the longer videos
]


@pytest.mark.parametrize("helper, params", BIT_EXACT, ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()) or "defaults")
def test_recipe_equals_the_helpers_preprocess_bit_for_bit(helper, params, recipe_videos, large_videos, ppvideo_helpers, np_int):
    """Every value identical (np.array_equal), same shape and float32, on each video.

    TokenShift's Paddle bilinear is redone in numpy with the kernel's float32 order of operations, so it is
    bit-exact too; ppTSN and VideoSwin resize with OpenCV like the helper, and the others share PIL/decord with it.
    """
    recipe = make(helper, params)
    if recipe.decoder == "decord":
        pytest.importorskip("decord")
    for path in [*recipe_videos, *large_videos]:
        ours = recipe.preprocess(path)
        theirs = reference(ppvideo_helpers, helper, recipe.params, path)
        assert_bit_equal(ours, theirs)
        layout = recipe.layouts[0]
        assert ours[0].shape[0] == 1 and ours[0].shape[layout.index("c")] == 3 and ours[0].flags.c_contiguous


def test_views_are_the_models_rows_per_clip():
    """All four fold their views into T and the model averages them inside the graph (ppTSNHead's mean over
    ``10 * num_seg``; RecognizerTransformer's view average), so each gives one output row per clip."""
    for helper in OWN:
        recipe = make(helper)
        assert recipe.views == 1
        assert recipe.aggregate(np.arange(6, dtype=np.float32).reshape(1, 6)).tolist() == list(range(6))


class _IndexVideo:
    """Stands in for decord's VideoReader: frame ``i`` is one pixel whose red and green bytes spell ``i``."""

    def __init__(self, count: int):
        self.count = count

    @staticmethod
    def _pixel(i) -> np.ndarray:
        i = int(i)  # decord takes float indices too (select_left's all-zero case hands it 0.0)
        return np.array([[[i % 256, i // 256, 0]]], dtype=np.uint8)

    def get_batch(self, indices):
        batch = np.stack([self._pixel(i) for i in indices])
        return type("Batch", (), {"asnumpy": lambda _: batch})()

    def __getitem__(self, i):
        return type("Frame", (), {"asnumpy": lambda _: self._pixel(i)})()


def _indices(imgs) -> list[int]:
    return [int(px[0, 0, 0]) + 256 * int(px[0, 0, 1]) for px in (np.asarray(img) for img in imgs)]


def test_samplers_pick_the_helpers_frames(paddle_pipelines, np_int):
    """The sampling rules alone, over every frame count from 1 to 300: PaddleVideo's Sampler reads a stand-in
    decord video whose frames spell their index, and must pick the frames ours pick."""
    from parity.recipes import ops

    sampler = paddle_pipelines("sample").Sampler
    cases = [
        (dict(num_seg=8, seg_len=1, valid_mode=True), lambda n: ops.middle_indices(n, 8, 1)),
        (dict(num_seg=4, seg_len=3, valid_mode=True), lambda n: ops.middle_indices(n, 4, 3)),
        (dict(num_seg=25, seg_len=1, valid_mode=True, select_left=True), lambda n: ops.left_middle_indices(n, 25)),
        (dict(num_seg=4, seg_len=32, frame_interval=2, valid_mode=True, use_pil=False), lambda n: ops.interval_indices(n, 4, 32, 2)),
        (dict(num_seg=1, seg_len=32, frame_interval=2, valid_mode=True, use_pil=False), lambda n: ops.interval_indices(n, 1, 32, 2)),
    ]
    for kwargs, ours in cases:
        for n in range(1, 301):
            out = sampler(**kwargs)({"format": "video", "backend": "decord", "frames": _IndexVideo(n), "frames_len": n})
            assert _indices(out["imgs"]) == ours(n), (kwargs, n)


@pytest.mark.parametrize("size, out", [((240, 320), (256, 341)), ((112, 200), (256, 457)), ((320, 180), (455, 256)), ((720, 1280), (256, 455)), ((257, 999), (256, 995))])
def test_paddle_bilinear_is_paddles_own(size, out):
    """JitterScale's resize (TokenShift, TimeSformer) redone in numpy equals Paddle's CPU ``F.interpolate`` to the bit."""
    paddle = pytest.importorskip("paddle")
    from parity.recipes import ops

    x = np.random.default_rng(sum(size)).standard_normal((3, 2, *size)).astype(np.float32)
    theirs = paddle.nn.functional.interpolate(paddle.to_tensor(x), size=out, mode="bilinear", align_corners=False).numpy()
    assert np.array_equal(ops.paddle_bilinear(x, *out), theirs)


def test_without_decord_the_frames_come_from_pyav_and_are_the_same(recipe_videos, monkeypatch):
    """Where decord has no wheel, ppTSN and VideoSwin decode with PyAV as parity/preprocess.py does; on H.264 the
    frames are decord's own."""
    pytest.importorskip("decord")
    from parity.recipes import ops

    pick = lambda count: [0, count // 2, count - 1, count // 2]
    with_decord = [ops.decord_frames(path, pick, per_frame=True) for path in recipe_videos]
    monkeypatch.setitem(__import__("sys").modules, "decord", None)
    for path, theirs in zip(recipe_videos, with_decord):
        ours = ops.decord_frames(path, pick)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_pptsm_takes_one_frame_per_segment():
    from parity.errors import HarnessError

    with pytest.raises(HarnessError, match="seg_len 2"):
        make("ppTSM_Inference_helper", {"seg_len": 2}).preprocess("clip.mp4")
