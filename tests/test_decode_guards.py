"""Inputs and bounded time (issue 18): clips that are not regular files, decodes that hang, Ctrl-C during a
hung decode, tensor-cache entries proven by their content, duplicate list lines; and the batch shapes each
runner was really given (issue 19 reads them)."""
import dataclasses
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from fixtures.faults import _frames, _write
from parity.clips import Clip, ClipListError, load_clips
from parity.inputs import clip_sha256, decode_clip
from parity.preprocess import FRAME_PATTERN, PreprocessConfig, decoder_name
from parity.stream import DecodeStats, decode_stream

CFG = PreprocessConfig.for_size(4, 64)


def _within(seconds: float, fn, *args):
    """``fn(*args)`` in a daemon thread; a call that has not returned in time fails the test (and cannot hang the suite)."""
    out = {}

    def call():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    """Three small real videos (H.264 in MP4), different content each."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(18)
    return [_write(folder / f"clip{i}.mp4", _frames(rng, 12, 72, 96)) for i in range(3)]


@pytest.fixture()
def special_files(tmp_path):
    """A FIFO (no writer: opening it to read blocks), a listening Unix socket, and a symlink to /dev/zero named like a video."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.mp4"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    sock.listen(1)
    link = tmp_path / "zero.mp4"
    link.symlink_to("/dev/zero")
    yield {"FIFO": fifo, "socket": sock_path, "character device": link}
    sock.close()

# ----------------------------------------------------------------------------- batch shapes


def test_each_backend_records_the_batch_shapes_its_runner_was_given(demo_run_config, parity_cache, tmp_path):
    from parity.report import write_report
    from parity.run import run

    cfg = dataclasses.replace(demo_run_config, backends=["paddle", "onnxruntime"], batch_size=5, workers=0, report=str(tmp_path))
    result = run(cfg, cache=parity_cache)
    write_report(result, tmp_path)
    clips = len(result.clips)
    T, S = result.preprocess["num_seg"], result.preprocess["target_size"]
    want = [[5, T, 3, S, S]] + ([[clips % 5, T, 3, S, S]] if clips % 5 else [])
    data = json.loads((tmp_path / "results.json").read_text())
    assert {b["name"]: b["batch_shapes"] for b in data["backends"]} == {"paddle": want, "onnxruntime": want}


# ----------------------------------------------------------------------------- not a regular file


def test_devices_fifos_and_sockets_are_each_clips_error_and_the_others_decode(videos, special_files):
    good = videos[0]
    odd = [Path("/dev/zero"), Path("/dev/urandom"), *special_files.values()]
    clips = [(i, Clip(p, 0)) for i, p in enumerate([good, *odd, videos[1]])]
    for workers in (0, 1):
        stats = DecodeStats()
        items = _within(60, lambda workers=workers, stats=stats: list(decode_stream(clips, CFG, workers, stats=stats)))
        assert [i.index for i in items] == list(range(len(clips)))
        assert items[0].ok and items[-1].ok and stats.errors == len(odd)
        kinds = ["character device", "character device", *special_files]
        for item, path, kind in zip(items[1:-1], odd, kinds):
            assert item.error == f"{path}: not a regular file ({kind})" and item.sha256 is None


def test_a_special_file_is_refused_before_it_is_hashed(special_files):
    for kind, path in special_files.items():
        with pytest.raises(OSError, match=f"not a regular file \\({kind}\\)"):  # an OSError: calibration leaves it out
            _within(10, clip_sha256, path)


def test_frame_folders_still_run_and_a_fifo_among_their_frames_is_refused(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(np.random.default_rng(1), 6, 72, 96)):
        Image.fromarray(frame).save(folder / FRAME_PATTERN.format(i + 1))
    item = decode_clip(Clip(folder, 0, 6), CFG)
    assert item.ok and item.tensor.shape == (1, 4, 3, 64, 64), item.error
    os.mkfifo(folder / FRAME_PATTERN.format(7))
    item = _within(10, decode_clip, Clip(folder, 0, 7), CFG)
    assert item.error == f"{folder / FRAME_PATTERN.format(7)}: not a regular file (FIFO)"


def test_a_fifo_as_the_clip_list_is_one_line_error(tmp_path):
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    with pytest.raises(ClipListError, match="not a regular file \\(FIFO\\)"):
        _within(10, load_clips, fifo)


# ----------------------------------------------------------------------------- decode time limit

# A hang hook for the spawned decode workers: sitecustomize runs in every new Python process. A clip
# whose name holds "hang" blocks its decode for an hour, after writing the worker's pid beside it
# (``<clip>.pid``) so the test can see the worker is gone afterwards.
HANG_HOOK = """
import os, sys, time
def _arm():
    import parity.inputs as inputs
    real = inputs.load_clip_frames
    def hanging(path, *a, **k):
        if 'hang' in os.path.basename(str(path)):
            with open(str(path) + '.pid', 'w') as f:
                f.write(str(os.getpid()))
            time.sleep(3600)
        return real(path, *a, **k)
    inputs.load_clip_frames = hanging
if any('spawn_main' in a or 'default_worker' in a for a in sys.orig_argv):  # only in decode workers (spawned, or Ray's)
    _arm()
"""


@pytest.fixture()
def hang_hook(tmp_path, monkeypatch) -> dict:
    """Spawned decode workers hang on clips named ``*hang*``; returns the environment that arms the hook."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HANG_HOOK)
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)  # the spawned workers inherit it
    return {"PYTHONPATH": path}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead, waiting to be reaped
    except FileNotFoundError:
        return False


def test_a_decode_past_the_time_limit_is_its_clips_error_and_its_worker_is_killed(videos, hang_hook, tmp_path):
    import shutil
    import time

    from parity.engines.local import LocalEngine

    hung = tmp_path / "hang.mp4"
    shutil.copy(videos[0], hung)
    paths = [videos[0], hung, videos[1], videos[2], videos[0], videos[1]]
    stats = DecodeStats()
    start = time.monotonic()
    items = _within(120, lambda: list(LocalEngine().decode(list(enumerate(Clip(p, 0) for p in paths)), CFG, 2, stats=stats,
                                                           decode_timeout=4)))
    assert time.monotonic() - start < 60
    assert [i.index for i in items] == list(range(len(paths)))  # in order, every other clip decoded
    assert [i.ok for i in items] == [True, False, True, True, True, True]
    assert items[1].error == f"{hung}: cannot decode: took longer than 4 s (the decode time limit); its decoder process was killed"
    assert items[1].timed_out and stats.timeouts == 1 and stats.worker_restarts == 1 and stats.errors == 1
    assert not _alive(int((tmp_path / "hang.mp4.pid").read_text()))
    np.testing.assert_array_equal(items[0].tensor, items[4].tensor)  # the replacement worker decodes the same


def test_the_ray_engine_ends_a_decode_past_the_time_limit(videos, hang_hook, tmp_path):
    """The clip past the limit is its error and the stream goes on; its task is force-cancelled, and no hung
    worker outlives the run's own Ray instance."""
    import shutil
    import time

    ray = pytest.importorskip("ray", reason="the [ray] extra is part of [test]; this only skips outside it")
    from parity.engines.ray import RayEngine

    hung = tmp_path / "hang.mp4"
    shutil.copy(videos[0], hung)
    # shared paths: the hang hook writes the worker's pid beside the path the task opens (sent as bytes, a clip is
    # opened under a temporary name on the worker's node)
    engine, stats = RayEngine(shared_paths=True), DecodeStats()
    try:
        items = _within(300, lambda: list(engine.decode(list(enumerate(Clip(p, 0) for p in [videos[1], hung, videos[2]])), CFG, 0,
                                                        stats=stats, decode_timeout=20)))
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert [i.ok for i in items] == [True, False, True] and [i.index for i in items] == [0, 1, 2]
    assert items[1].error == f"{hung}: cannot decode: took longer than 20 s (the decode time limit); its decode task was killed"
    assert stats.timeouts == 1 and items[1].timed_out
    worker = int((tmp_path / "hang.mp4.pid").read_text())
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(worker)


def test_decode_stream_keeps_its_call_without_a_time_limit_argument(videos):
    items = list(decode_stream(enumerate(Clip(p, 0) for p in videos), CFG, 1, None, DecodeStats(), ()))
    assert all(i.ok and not i.timed_out for i in items)


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_ends_a_run_in_seconds_while_a_decode_worker_hangs(demo_artifacts, hang_hook, tmp_path):
    """SIGINT while a worker is stuck in a decode: exit 130 within seconds, nothing reported, the worker gone."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    src = demo_artifacts.val_list
    lines = [f"{(src.parent / ln.split()[0]).resolve()} {ln.split()[1]}" for ln in src.read_text().splitlines() if ln.strip()]
    hung = tmp_path / "hang.mp4"
    shutil.copy(lines[0].rsplit(" ", 1)[0], hung)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([lines[0], f"{hung} 0", *lines[1:6]]) + "\n")
    report = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "parity", "run", "--paddle-model", str(demo_artifacts.paddle_model.model_file),
                             "--onnx", str(demo_artifacts.onnx), "--clips", str(listing), "--backends", "paddle,onnxruntime",
                             "--workers", "2", "--report", str(report)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **hang_hook},
                            start_new_session=True)  # its own process group: the cleanup below reaches its workers too
    try:
        pid_file = Path(f"{hung}.pid")
        deadline = time.monotonic() + 300
        while not pid_file.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.is_file(), proc.communicate(timeout=60)
        time.sleep(1.0)  # the run is now waiting on the hung clip
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - start < 15, "Ctrl-C took too long"
    finally:  # a run that did not end (the old code waited on the hung worker forever): kill it and its workers
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
    assert proc.returncode == 130 and "parity: interrupted" in err and "Traceback" not in err, err[-2000:]
    assert not report.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    worker = int(pid_file.read_text())
    assert not _alive(worker)


# ----------------------------------------------------------------------------- tensor cache proven by content


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("workers", [0, 1])
def test_swapped_zeroed_or_damaged_cache_entries_are_decoded_again_and_said(videos, tmp_path, workers):
    from parity.inputs import TensorCache

    cache = TensorCache(tmp_path / "tensors")
    clips = [(i, Clip(p, i)) for i, p in enumerate(videos)]

    def decode():
        stats = DecodeStats()
        return [i.tensor for i in decode_stream(clips, CFG, workers, cache, stats)], stats

    fresh, stats = decode()
    assert stats.decoded == 3 and stats.cache_rejected == 0 and len(_entries(cache.folder)) == 3
    assert not all(np.array_equal(fresh[0], t) for t in fresh[1:])
    by_clip = {i: cache.path(clip_sha256(p), CFG, decoder_name(p)) for i, p in enumerate(videos)}

    # two entries swapped: each holds another clip's tensor (before: fed to every backend as this clip's)
    a, b = by_clip[0], by_clip[1]
    tmp = a.with_name("swap")
    a.rename(tmp), b.rename(a), tmp.rename(b)
    again, stats = decode()
    assert all(np.array_equal(x, y) for x, y in zip(again, fresh))
    assert stats.cache_rejected == 2 and stats.decoded == 2 and stats.cache_hits == 1
    assert stats.cache_notes == [f"{by_clip[i]}: tensor cache entry was made for another clip or preprocessing (moved or swapped); "
                                 f"{videos[i]} was decoded again" for i in (0, 1)]
    _, stats = decode()  # rewritten: every entry proves out again
    assert stats.decoded == 0 and stats.cache_hits == 3 and stats.cache_notes == []

    # the tensor zeroed under its own record; a file zeroed whole; a file cut short
    with np.load(by_clip[0]) as npz:
        meta = npz["meta"]
    np.savez(by_clip[0], tensor=np.zeros_like(fresh[0]), meta=meta)
    by_clip[1].write_bytes(bytes(by_clip[1].stat().st_size))
    by_clip[2].write_bytes(by_clip[2].read_bytes()[:1000])
    again, stats = decode()
    assert all(np.array_equal(x, y) for x, y in zip(again, fresh)) and stats.cache_rejected == 3 and stats.decoded == 3
    assert "tensor does not match its recorded sha256 (damaged or altered)" in stats.cache_notes[0]
    assert all(f"{by_clip[i]}: tensor cache entry unreadable (" in stats.cache_notes[i] for i in (1, 2))
    assert all(n.endswith(f"; {v} was decoded again") and "\n" not in n for n, v in zip(stats.cache_notes, videos))
    assert stats.to_dict()["cache_notes"] == stats.cache_notes


# ----------------------------------------------------------------------------- duplicate list lines


def test_a_clip_listed_many_times_is_kept_once_with_a_note(videos, tmp_path):
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.mp4"
    link.symlink_to(videos[0])
    spellings = [str(videos[0]), f"{videos[0].parent}/../{videos[0].parent.name}/{videos[0].name}", str(link)]
    lines = [f"{videos[1]} 1"] + [f"{spellings[i % 3]} 0" for i in range(60)] + [f"{videos[2]} 2", f"{videos[1]} 1"]
    listing = tmp_path / "sub" / "list.txt"
    listing.write_text("# header\n" + "\n".join(lines) + "\n")
    clips = load_clips(listing)
    assert [(c.path, c.label) for c in clips] == [(videos[1], 1), (videos[0], 0), (videos[2], 2)]
    assert clips.duplicates == 60  # 59 more of videos[0] (three spellings, one a symlink), 1 more of videos[1]
    assert clips.notes == [f"{listing}: 60 duplicate line(s) dropped, each clip is counted once "
                           f"(first: {spellings[1]} on line 4, listed on line 3)"]
    assert load_clips(videos[0].parent).notes == [] and len(load_clips(videos[0].parent)) == 3


def test_a_run_counts_a_repeated_clip_once(demo_run_config, parity_cache, tmp_path):
    from parity.run import run

    src = Path(demo_run_config.clips)
    lines = [f"{(src.parent / ln.split()[0]).resolve()} {ln.split()[1]}" for ln in src.read_text().splitlines() if ln.strip()][:3]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines * 20) + "\n")
    cfg = dataclasses.replace(demo_run_config, clips=str(listing), backends=["paddle", "onnxruntime"], workers=0, report=str(tmp_path / "r"))
    result = run(cfg, cache=parity_cache)
    assert [c.path for c in result.clips] == [ln.rsplit(" ", 1)[0] for ln in lines]
    assert result.comparisons[0].clips_compared == 3 and result.run["decode"]["decoded"] == 3


def test_parity_preprocess_names_a_device_for_what_it_is(tmp_path, capsys):
    """`parity preprocess /dev/zero` said 'file not found'; it is a character device."""
    from parity.cli import main

    assert main(["preprocess", "/dev/zero", "-o", str(tmp_path / "x.npy"), "--num-seg", "8", "--target-size", "224"]) == 2
    assert "parity: error: /dev/zero: not a regular file (character device)" in capsys.readouterr().err
