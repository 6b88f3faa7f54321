"""Clips -> tensors, streamed: each clip decoded once, in parallel, in list order, in bounded memory.

Decoding runs in worker processes (spawned, so nothing of Paddle or ONNX Runtime is inherited)
while the backends infer in the main process. At most ``2 x workers`` decoded clips wait at any
time, so peak memory does not grow with the number of clips.

Time is bounded: a decode that takes longer than ``decode_timeout`` seconds is that clip's error and
its worker is killed and replaced; a worker that dies costs only its clip. When the stream stops
early (Ctrl-C, an error downstream) the workers are killed, not waited for: a decoder stuck in a
read never holds a run open.

The thread budget: backends run one after another on each batch, so each gets every core
(``backend_threads``). Decode workers are single-threaded and run at the lowest priority (nice
19): they take the cycles inference leaves idle (its serial parts, Python between calls, the
time a backend waits for the next clip) instead of competing with it.
"""
from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait

from .clips import Clip
from .helper_inputs import decode
from .inputs import ClipInput, TensorCache
from .machine import cpu_count
from .optional import lazy, missing
from .preprocess import PreprocessConfig
from .schedule import passive_wait
from .signals import held, release

cv2 = lazy("cv2")

# Nice 19, not 10: at 10 the decoders still took enough of the cores to slow Paddle to 1.31x its latency alone inside
# the run and ONNX Runtime to 1.19x; at 19, 1.07x and 0.91x, at the same seconds per clip (benchmarks/scale.py,
# paddle,onnxruntime on the 2-core EPYC). Nothing is lost to it: when the backends wait for a clip, the cores are the
# decoders' whatever their priority. (SCHED_IDLE was measured too: no faster here, and on a machine shared with other
# programs it would leave decoding almost nothing.)
DECODE_NICE = 19
# Seconds one clip's decode may take before it is that clip's error and its worker is killed. Measured
# here (2 cores shared with other work, decode niced): the demo's clips take well under a second, a
# 100-frame 4K H.264 clip with one keyframe about 20 s (decord decodes every frame up to the last one
# sampled, ~0.2 s per 4K frame). 300 s covers about a minute of 4K video at 25 fps on such a machine, far
# beyond the few-second clips action recognition runs on, and still ends a decoder stuck in a read (a
# network mount that stopped answering, a pathological file) within five minutes.
DECODE_TIMEOUT = 300.0


@dataclass(frozen=True)
class ThreadBudget:
    """How the machine's cores are shared: decode workers (1 thread each, niced) and backend math threads."""

    cores: int
    workers: int
    backend_threads: int
    threads_given: bool = False  # --threads: the schedule keeps turn-taking at that count (parity.schedule)
    workers_given: bool = False  # --workers: kept whatever the schedule

    @classmethod
    def plan(cls, workers: int | None = None, threads: int | None = None) -> "ThreadBudget":
        cores = cpu_count()
        return cls(cores, cores if workers is None else max(0, workers), threads or cores, bool(threads), workers is not None)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DecodeStats:
    """What the stream did: counted in the parent, from what each worker reports."""

    clips: int = 0
    decoded: int = 0  # real decodes (a tensor-cache hit is not one)
    cache_hits: int = 0
    saved_inputs: int = 0  # saved input tensors (--inputs): loaded, neither decoded nor from the cache
    errors: int = 0
    decode_seconds: float = 0.0  # summed over workers
    worker_restarts: int = 0  # workers replaced: died, or killed after the time limit
    timeouts: int = 0  # clips whose decode took longer than decode_timeout
    cache_rejected: int = 0  # tensor-cache entries whose content did not prove out: decoded again
    cache_notes: list[str] = field(default_factory=list)  # one line per rejected entry, naming it and its clip

    def count(self, item: ClipInput) -> None:
        self.clips += 1
        self.decoded += item.decoded
        saved = item.ok and item.clip is not None and item.clip.path.suffix == ".npy"
        self.saved_inputs += saved
        self.cache_hits += item.ok and not item.decoded and not saved
        self.errors += not item.ok
        self.decode_seconds += item.seconds
        self.timeouts += item.timed_out
        self.cache_rejected += len(item.cache_notes)
        self.cache_notes.extend(item.cache_notes)

    def to_dict(self) -> dict:
        return asdict(self)


def _worker_init() -> None:
    """Decode workers: lower priority, one thread each, and Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    release()  # started with SIGINT/SIGTERM held (parity.signals): a SIGTERM now ends it, Ctrl-C is ignored
    try:
        os.nice(DECODE_NICE)
    except OSError:
        pass
    if not missing("cv2"):
        cv2.setNumThreads(1)


def _worker_main(conn) -> None:
    """A decode worker: one clip at a time, ``helper_inputs.decode`` arguments in, ``ClipInput`` out, until told to stop."""
    passive_wait()  # any OpenMP pool a decoder starts sleeps when done (parity.schedule)
    _worker_init()
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if args is None:
            return
        conn.send(decode(*args))


def decode_stream(
    clips: Iterable[tuple[int, Clip]],
    cfg: PreprocessConfig,
    workers: int,
    cache: TensorCache | None = None,
    stats: DecodeStats | None = None,
    variants: tuple[str, ...] = (),
    decode_timeout: float | None = DECODE_TIMEOUT,
    recipe=None,
) -> Iterator[ClipInput]:
    """Yield every ``(index, clip)`` decoded, in order. ``workers=0`` decodes in this process.

    ``recipe``: another PaddleVideo helper's preprocessing (``parity.recipes``), run by each worker instead of ``cfg``'s.

    A decode that runs longer than ``decode_timeout`` seconds (None: no limit), timed from when a
    worker takes the clip, is the clip's error ("took longer than ... s") and its worker is killed
    and replaced; the other clips in flight go on. A worker that dies (a decoder crash) costs only
    its clip: the clip is tried once more in a fresh worker, and if that dies too it becomes the
    clip's error. With ``workers=0`` no time limit is enforced: a decoder stuck inside native code
    cannot be stopped from its own process (use workers for untrusted inputs).
    """
    stats = stats if stats is not None else DecodeStats()
    if workers <= 0:
        for index, clip in clips:
            item = decode(clip, cfg, index, cache, variants, recipe)
            stats.count(item)
            yield item
        return
    pool = _DecodePool(workers, decode_timeout, stats)
    try:
        yield from pool.stream(clips, lambda index, clip: (clip, cfg, index, cache, variants, recipe))
    except BaseException:  # Ctrl-C, an error downstream, the consumer closing the stream early
        pool.kill()
        raise
    pool.close()


class _Worker:
    """One spawned decode process and its pipe; ``slot`` is the clip it is decoding (None: idle)."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="parity-decode")
        self.slot: _Slot | None = None
        self.started = 0.0
        with held():  # a Ctrl-C lands once the worker has all its orders and is in _LIVE, to be killed
            self.process.start()
            _LIVE.add(self)
        child.close()

    def give(self, slot: "_Slot", args: tuple) -> None:
        slot.attempts += 1
        self.slot, self.started = slot, time.monotonic()
        self.conn.send(args)

    def kill(self) -> None:
        """SIGKILL and reap: a worker stuck in a read or a loop ignores nothing of this."""
        _LIVE.discard(self)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self.conn.close()


@dataclass
class _Slot:
    index: int
    clip: Clip
    item: ClipInput | None = None
    attempts: int = 0
    worker: _Worker | None = None


_LIVE: set[_Worker] = set()


@atexit.register
def _kill_live_workers() -> None:
    """At exit (a Ctrl-C that left a stream suspended), no decode worker outlives the run or is waited for."""
    for worker in list(_LIVE):
        worker.kill()


class _DecodePool:
    """Up to ``workers`` decode processes fed from an in-order window of ``2 x workers`` clips."""

    def __init__(self, workers: int, timeout: float | None, stats: DecodeStats):
        self.ctx = mp.get_context("spawn")
        self.size, self.timeout, self.stats = workers, timeout if timeout and timeout > 0 else None, stats
        self.workers: list[_Worker] = []

    def stream(self, clips: Iterable[tuple[int, Clip]], args_of) -> Iterator[ClipInput]:
        window: deque[_Slot] = deque()
        source = iter(clips)
        exhausted = False
        while True:
            while not exhausted and len(window) < 2 * self.size:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                else:
                    window.append(_Slot(*nxt))
            if not window:
                return
            self._dispatch(window, args_of)
            if window[0].item is None:
                if window[0].worker is not None:  # else its worker died before taking it: dispatch it again
                    self._wait()
                continue
            slot = window.popleft()
            self.stats.count(slot.item)
            yield slot.item

    def _dispatch(self, window: deque, args_of) -> None:
        """Give the first waiting clips of the window to idle workers (started as needed)."""
        for slot in window:
            if slot.item is not None or slot.worker is not None:
                continue
            worker = next((w for w in self.workers if w.slot is None), None)
            if worker is None and len(self.workers) < self.size:
                worker = _Worker(self.ctx)
                self.workers.append(worker)
            if worker is None:
                return
            slot.worker = worker
            try:
                worker.give(slot, args_of(slot.index, slot.clip))
            except OSError:  # it died before it took the clip: as a death while decoding it
                self._died(worker, slot, time.monotonic())

    def _wait(self) -> None:
        """Block until a busy worker answers, dies or passes its time limit; settle each."""
        busy = [w for w in self.workers if w.slot is not None]
        if not busy:
            return
        timeout = None
        if self.timeout is not None:
            timeout = max(0.0, min(w.started + self.timeout for w in busy) - time.monotonic())
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        now = time.monotonic()
        for worker in busy:
            slot = worker.slot
            if worker.conn in ready or worker.process.sentinel in ready:
                try:
                    item = worker.conn.recv() if worker.conn.poll() else None
                except (EOFError, OSError):
                    item = None
                if item is not None:
                    worker.slot, slot.worker, slot.item = None, None, item
                    continue
                self._died(worker, slot, now)
            elif self.timeout is not None and now - worker.started >= self.timeout:
                self._replace(worker)
                slot.worker = None
                slot.item = ClipInput(slot.clip, slot.index, seconds=now - worker.started, timed_out=True,
                                      error=f"{slot.clip.path}: cannot decode: took longer than {self.timeout:g} s "
                                            "(the decode time limit); its decoder process was killed")

    def _died(self, worker: _Worker, slot: _Slot, now: float) -> None:
        """A worker died on a clip: the clip is tried once more in a fresh worker, then it is the clip's error."""
        self._replace(worker)
        slot.worker = None
        if slot.attempts >= 2:
            slot.item = ClipInput(slot.clip, slot.index, error=f"{slot.clip.path}: cannot decode: the decoder process died",
                                  seconds=now - worker.started)
        # else: the next dispatch gives it to a fresh worker

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker (dead or hung) and drop it; the next dispatch starts a fresh one."""
        worker.kill()
        self.workers.remove(worker)
        self.stats.worker_restarts += 1

    def close(self) -> None:
        """The stream is done: idle workers are told to stop, then reaped (killed if they linger)."""
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.kill()
        self.workers = []

    def kill(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers = []
