"""Clips -> tensors, streamed: each clip decoded once, in parallel, in list order, in bounded memory.

Decoding runs in worker processes (spawned, so nothing of Paddle or ONNX Runtime is inherited)
while the backends infer in the main process. At most ``2 x workers`` decoded clips wait at any
time, so peak memory does not grow with the number of clips.

The thread budget: backends run one after another on each batch, so each gets every core
(``backend_threads``). Decode workers are single-threaded and run at a lower priority (nice
+10): they take the cycles inference leaves idle (its serial parts, Python between calls)
instead of competing with it.
"""
from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass

from .clips import Clip
from .env import cpu_count
from .inputs import ClipInput, TensorCache, decode_clip
from .preprocess import PreprocessConfig

DECODE_NICE = 10


@dataclass(frozen=True)
class ThreadBudget:
    """How the machine's cores are shared: decode workers (1 thread each, niced) and backend math threads."""

    cores: int
    workers: int
    backend_threads: int

    @classmethod
    def plan(cls, workers: int | None = None, threads: int | None = None) -> "ThreadBudget":
        cores = cpu_count()
        return cls(cores, cores if workers is None else max(0, workers), threads or cores)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DecodeStats:
    """What the stream did: counted in the parent, from what each worker reports."""

    clips: int = 0
    decoded: int = 0  # real decodes (a tensor-cache hit is not one)
    cache_hits: int = 0
    errors: int = 0
    decode_seconds: float = 0.0  # summed over workers
    worker_restarts: int = 0

    def count(self, item: ClipInput) -> None:
        self.clips += 1
        self.decoded += item.decoded
        self.cache_hits += item.ok and not item.decoded
        self.errors += not item.ok
        self.decode_seconds += item.seconds

    def to_dict(self) -> dict:
        return asdict(self)


def _worker_init() -> None:
    """Decode workers: lower priority, one thread each, and Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(DECODE_NICE)
    except OSError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _decode(args) -> ClipInput:
    return decode_clip(*args)


def decode_stream(
    clips: Iterable[tuple[int, Clip]],
    cfg: PreprocessConfig,
    workers: int,
    cache: TensorCache | None = None,
    stats: DecodeStats | None = None,
    variants: tuple[str, ...] = (),
) -> Iterator[ClipInput]:
    """Yield every ``(index, clip)`` decoded, in order. ``workers=0`` decodes in this process.

    A worker that dies (a decoder crash) costs only its clip: the clip is retried alone in a
    fresh process, and if that dies too it becomes the clip's error; the rest go on.
    """
    stats = stats if stats is not None else DecodeStats()
    if workers <= 0:
        for index, clip in clips:
            item = decode_clip(clip, cfg, index, cache, variants)
            stats.count(item)
            yield item
        return
    pool = _pool(workers)
    pending: deque = deque()
    source = iter(clips)
    try:
        while True:
            while len(pending) < 2 * workers:
                nxt = next(source, None)
                if nxt is None:
                    break
                pending.append((nxt, pool.submit(_decode, (nxt[1], cfg, nxt[0], cache, variants))))
            if not pending:
                break
            (index, clip), future = pending.popleft()
            try:
                item = future.result()
            except BrokenProcessPool:
                stats.worker_restarts += 1
                pool.shutdown(wait=False, cancel_futures=True)
                item = _decode_alone(clip, cfg, index, cache, variants)
                pool = _pool(workers)
                pending = deque((c, pool.submit(_decode, (c[1], cfg, c[0], cache, variants))) for c, _ in pending)
            stats.count(item)
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)


def _decode_alone(clip: Clip, cfg: PreprocessConfig, index: int, cache: TensorCache | None, variants: tuple[str, ...]) -> ClipInput:
    """Decode one clip in a process of its own; its death is the clip's error."""
    start = time.perf_counter()
    with _pool(1) as pool:
        try:
            return pool.submit(_decode, (clip, cfg, index, cache, variants)).result()
        except BrokenProcessPool:
            return ClipInput(clip, index, error=f"{clip.path}: cannot decode: the decoder process died", seconds=time.perf_counter() - start)
