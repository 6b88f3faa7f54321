import numpy as np
import pytest
from PIL import Image

from parity import synth
from parity.preprocess import (
    MEAN,
    STD,
    ClipError,
    PreprocessConfig,
    cpp_crop_box,
    cpp_scale_size,
    crop_box,
    load_clip_tensor,
    preprocess_frames,
    sample_indices,
    scale_size,
    video_indices,
)


def test_sample_indices_middle_of_each_segment():
    # 32 frames, 8 segments: average 4, index (4-1)//2 + 4i
    assert sample_indices(32, 8) == [1, 5, 9, 13, 17, 21, 25, 29]
    # 250 frames, 16 segments: average 15, first index 7
    assert sample_indices(250, 16) == [7 + 15 * i for i in range(16)]


def test_sample_indices_short_video():
    # fewer frames than segments: index i; videos wrap it onto the video (frame folders do not)
    assert sample_indices(7, 8) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert video_indices(7, 8) == [0, 1, 2, 3, 4, 5, 6, 0]
    # 16 frames, 8 segments: average 2 -> (2-1)//2 + 2i
    assert video_indices(16, 8) == [0, 2, 4, 6, 8, 10, 12, 14]


@pytest.mark.parametrize(
    "size, paddlevideo, cpp",
    [
        # (w, h) -> scaled (w, h) and crop offset (x1, y1)
        ((640, 272), ((341, 256), (58, 16)), ((602, 256), (189, 16))),
        ((1280, 720), ((341, 256), (58, 16)), ((455, 256), (115, 16))),
        ((176, 144), ((341, 256), (58, 16)), ((312, 256), (44, 16))),
    ],
)
def test_scale_and_crop_geometry(size, paddlevideo, cpp):
    scaled = scale_size(*size, 256)
    assert (scaled, crop_box(*scaled, 224)[:2]) == paddlevideo
    scaled = cpp_scale_size(*size, 256)
    assert (scaled, cpp_crop_box(*scaled, 224)[:2]) == cpp


def test_sample_indices_250_frames_8_segments():
    assert video_indices(250, 8) == [15 + 31 * i for i in range(8)]


@pytest.mark.parametrize(
    "size, expected",
    [((640, 272), (341, 256)), ((1280, 720), (341, 256)), ((176, 144), (341, 256)), ((240, 320), (256, 341)), ((341, 256), (341, 256))],
)
def test_scale_forces_4_3(size, expected):
    assert scale_size(*size, 256) == expected


def test_center_crop_uses_python_round():
    # (341 - 224) / 2 = 58.5 -> round() = 58 (banker's rounding), not 59
    assert crop_box(341, 256, 224) == (58, 16, 282, 240)


def test_one_pixel_through_normalization():
    frame = np.zeros((256, 341, 3), dtype=np.uint8)
    frame[16 + 10, 58 + 20] = (255, 128, 0)
    out = preprocess_frames([frame], PreprocessConfig(num_seg=1))
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
    expected = (np.array([255, 128, 0], np.float32) / 255 - MEAN.ravel()) / STD.ravel()
    np.testing.assert_allclose(out[0, :, 10, 20], expected, rtol=1e-6)


def test_scale_uses_pil_bilinear():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = preprocess_frames([frame], PreprocessConfig(num_seg=1))
    ref = np.asarray(Image.fromarray(frame).resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240)), np.float32)
    np.testing.assert_allclose(out[0], ((ref.transpose(2, 0, 1) / 255) - MEAN) / STD, rtol=1e-5, atol=1e-5)


def test_real_clip_decodes_to_model_tensor(tmp_path):
    spec = synth.SynthSpec(clips_per_class=1, frames=20)
    listing = synth.generate_split(tmp_path, "val", spec)
    import av

    from parity.preprocess import video_indices

    cfg = PreprocessConfig(num_seg=8)
    tensors = []
    for line in listing.read_text().splitlines():
        path = tmp_path / line.split()[0]
        tensor = load_clip_tensor(path, cfg)
        assert tensor.shape == (1, 8, 3, 224, 224) and tensor.dtype == np.float32
        # The same sampled frames, decoded by PyAV and preprocessed: the clip's real pixels, not zeros.
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        expected = preprocess_frames([frames[i] for i in video_indices(len(frames), 8)], cfg)
        assert np.abs(tensor[0] - expected).mean() < 0.05  # decoders may differ by a grey level in chroma upsampling
        assert tensor.std() > 0.3
        tensors.append(tensor)
    assert not np.allclose(tensors[0], tensors[1])


def test_corrupt_and_missing_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(ClipError) as err:
        load_clip_tensor(bad, PreprocessConfig())
    msg = str(err.value)
    assert str(bad) in msg and "cannot decode" in msg and "\n" not in msg
    with pytest.raises(ClipError, match="file not found"):
        load_clip_tensor(tmp_path / "nope.avi", PreprocessConfig())


def test_pyav_fallback_matches_decord(tmp_path, monkeypatch):
    import builtins

    spec = synth.SynthSpec(clips_per_class=1, frames=16)
    listing = synth.generate_split(tmp_path, "val", spec)
    path = tmp_path / listing.read_text().split()[0]
    with_decord = load_clip_tensor(path, PreprocessConfig())
    real_import = builtins.__import__

    def no_decord(name, *args, **kwargs):
        if name == "decord":
            raise ImportError("no decord")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_decord)
    with_pyav = load_clip_tensor(path, PreprocessConfig())
    assert with_pyav.shape == with_decord.shape
    # both decode the same H.264 stream through FFmpeg; allow for colour-conversion rounding
    assert np.abs(with_pyav - with_decord).mean() < 0.05


def _write_frames(folder, frames):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(folder / f"img_{i:05}.jpg", quality=95)


def test_frame_folder_is_sampled_1_based(tmp_path):
    frames = [np.full((240, 320, 3), 10 * i, np.uint8) for i in range(16)]
    _write_frames(tmp_path / "v_x", frames)
    tensor = load_clip_tensor(tmp_path / "v_x", PreprocessConfig(num_seg=8))
    # 16 frames / 8 segments: offsets 0, 2, ..., 14 -> img_00001.jpg, img_00003.jpg, ... (grey 0, 20, ...)
    grey = (tensor[0, :, 0, 100, 100] * STD[0, 0, 0] + MEAN[0, 0, 0]) * 255
    np.testing.assert_allclose(grey, [0, 20, 40, 60, 80, 100, 120, 140], atol=2)


def test_frame_folder_shorter_than_segments_names_the_missing_frame(tmp_path):
    _write_frames(tmp_path / "short", [np.zeros((240, 320, 3), np.uint8)] * 7)
    with pytest.raises(ClipError, match=r"img_00008\.jpg: frame not found"):
        load_clip_tensor(tmp_path / "short", PreprocessConfig(num_seg=8))


def test_both_list_formats(tmp_path):
    from parity.clips import load_clips

    _write_frames(tmp_path / "frames" / "v_a", [np.zeros((240, 320, 3), np.uint8)] * 9)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v_b.avi").write_bytes(b"")
    (tmp_path / "frames.txt").write_text("frames/v_a 9 3\n")
    (tmp_path / "videos.txt").write_text("videos/v_b 5\n")  # PaddleVideo lists may omit the suffix
    (frame_clip,) = load_clips(tmp_path / "frames.txt")
    (video_clip,) = load_clips(tmp_path / "videos.txt")
    assert (frame_clip.path, frame_clip.num_frames, frame_clip.label) == (tmp_path / "frames" / "v_a", 9, 3)
    assert (video_clip.path, video_clip.label) == (tmp_path / "videos" / "v_b.avi", 5)


def test_cpp_variant_differs_on_non_4_3_video(tmp_path):
    spec = synth.SynthSpec(clips_per_class=1, frames=16, width=320, height=180)  # 16:9
    listing = synth.generate_split(tmp_path, "val", spec)
    path = tmp_path / listing.read_text().split()[0]
    python = load_clip_tensor(path, PreprocessConfig())
    cpp = load_clip_tensor(path, PreprocessConfig(variant="cpp"))
    assert python.shape == cpp.shape == (1, 8, 3, 224, 224)
    assert np.abs(python - cpp).mean() > 0.05


def test_cpp_variant_equals_python_on_exact_4_3_frames():
    # a 341x256 frame needs no resize in either path, and the crops differ only by rounding (58 vs 58)
    frame = np.random.default_rng(0).integers(0, 255, (256, 341, 3), dtype=np.uint8)
    a = preprocess_frames([frame], PreprocessConfig(num_seg=1))
    b = preprocess_frames([frame], PreprocessConfig(num_seg=1, variant="cpp"))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_preprocess_command_writes_the_tensor(tmp_path):
    from parity.cli import main

    listing = synth.generate_split(tmp_path, "val", synth.SynthSpec(clips_per_class=1, frames=16))
    path = tmp_path / listing.read_text().split()[0]
    assert main(["preprocess", str(path), "-o", str(tmp_path / "t.npy"), "--num-seg", "8"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), load_clip_tensor(path, PreprocessConfig()))
    assert main(["preprocess", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "u.npy")]) == 2
