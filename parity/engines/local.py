"""The local engine: decode workers in a process pool, runners in this process (or each in its own)."""
from __future__ import annotations

import dataclasses
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import wait

import numpy as np

from ..backends.isolated import IsolatedRunner
from ..backends.registry import Status
from ..errors import one_line
from ..helper_inputs import arrays_of
from ..inputs import ClipInput
from ..machine import cpu_count
from ..results import BackendRecord
from ..stream import DECODE_TIMEOUT, decode_stream
from .costs import PROBE_MIN_CLIPS, plan_schedule
from .trial import Trial


def logit_rows(outputs: dict, count: int, views: int = 1) -> np.ndarray:
    """A runner's output dict -> ``[count, classes]`` float32 logits (the model has one output); with ``views`` > 1
    (another helper's views folded into the batch), ``[count, views, classes]``: each clip's rows, in order."""
    if len(outputs) != 1:
        raise RuntimeError(f"model has {len(outputs)} outputs; expected one (logits)")
    out = np.asarray(next(iter(outputs.values())), dtype=np.float32)
    if views == 1:
        return out.reshape(count, -1)
    if out.ndim != 2 or out.shape[0] != count * views:
        raise RuntimeError(f"model output has shape {list(out.shape)}; expected [{count * views}, classes] "
                           f"({count} clip(s) x {views} views)")
    return out.reshape(count, views, -1)


def batch_feed(items: list[ClipInput], variant: str | None = None) -> np.ndarray | tuple[np.ndarray, ...]:
    """The lane's input for a batch: the run's preprocessing, or another variant's (preprocessing attribution).
    A clip of several model inputs gives a tuple: each input's arrays concatenated along the batch axis."""
    return batch_arrays([i.feed(variant) for i in items])


def batch_arrays(tensors: list) -> np.ndarray | tuple[np.ndarray, ...]:
    """Clips' tensors (an array each, or a tuple per model input) -> one batch, concatenated per input on axis 0."""
    if len(tensors) == 1:
        return tensors[0]
    if isinstance(tensors[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*tensors))
    return np.concatenate(tensors)


def feed_dict(names: tuple[str, ...], feed) -> dict[str, np.ndarray]:
    """``{input name: array}`` in the model's input order, for any runner."""
    arrays = arrays_of(feed)
    if len(arrays) != len(names):
        raise RuntimeError(f"the preprocessing gives {len(arrays)} input(s); the model takes {len(names)} ({', '.join(names)})")
    return dict(zip(names, arrays))


class LaneFlow:
    """Per-lane batching and in-order delivery: shared by the engines.

    Each lane collects clips until it has its batch; a clip is delivered (``on_clip``) once every
    lane still running has its row, in list order, and is then forgotten.
    """

    def __init__(self, lanes, records: dict[str, BackendRecord], on_clip: Callable):
        self.lanes = {lane.name: lane for lane in lanes}
        self.records, self.on_clip = records, on_clip
        self.running: set[str] = set()
        self.buffers: dict[str, list[ClipInput]] = {}
        self.waiting: OrderedDict[int, tuple[ClipInput, dict]] = OrderedDict()

    def start(self, name: str) -> None:
        self.running.add(name)
        self.buffers[name] = []

    def fail(self, name: str, exc: BaseException | str) -> None:
        record = self.records[name]
        record.status, record.reason = Status.ERROR, exc if isinstance(exc, str) else one_line(exc)
        self.running.discard(name)
        self.buffers.pop(name, None)

    def add(self, item: ClipInput) -> list[tuple[str, list[ClipInput]]]:
        """Queue a clip; returns the (lane, batch) pairs that are now full."""
        self.waiting[item.index] = (item, {})
        full = []
        for name in sorted(self.running):
            self.buffers[name].append(item)
            if len(self.buffers[name]) >= self.lanes[name].batch:
                full.append((name, self.buffers[name]))
                self.buffers[name] = []
        return full

    def remainders(self) -> list[tuple[str, list[ClipInput]]]:
        left = [(name, batch) for name, batch in self.buffers.items() if batch and name in self.running]
        for name, _ in left:
            self.buffers[name] = []
        return left

    def done(self, name: str, batch: list[ClipInput], rows: np.ndarray, seconds: float) -> None:
        if len(rows) != len(batch):
            raise RuntimeError(f"{len(rows)} rows of logits for a batch of {len(batch)} clips")
        for item, row in zip(batch, rows):
            self.waiting[item.index][1][name] = row
        self.records[name].latency_ms.extend([seconds * 1000.0 / len(batch)] * len(batch))

    def deliver(self) -> None:
        while self.waiting:
            index, (item, rows) = next(iter(self.waiting.items()))
            if not self.running <= rows.keys():
                return
            self.waiting.popitem(last=False)
            self.on_clip(item, {n: r for n, r in rows.items() if n in self.running})


def new_records(lanes, art) -> tuple[dict[str, BackendRecord], list]:
    """A record per lane; lanes that cannot run here are ``unavailable`` with the reason."""
    records, runnable = {}, []
    for lane in lanes:
        b = lane.backend
        record = BackendRecord(lane.name, b.precision, lane.description, status=Status.OK, batch=lane.batch, kind=lane.kind)
        reason = b.availability(art)
        if reason:
            record.status, record.reason = Status.UNAVAILABLE, reason
        else:
            runnable.append(lane)
        records[lane.name] = record
    return records, runnable


class LocalEngine:
    name = "local"

    def __init__(self, isolate: bool = False, timeout: float | None = None):
        # A timeout can only be enforced on a backend in its own process: it makes every backend isolated.
        self.isolate, self.timeout = isolate or timeout is not None, timeout
        self.schedule = None  # parity.schedule.Schedule, from plan_schedule; None: backends take turns
        self.record, self.trial = None, False

    def plan_schedule(self, plan) -> None:
        """Choose how the backends share the cores (``parity.schedule``), from measured costs; said in one line."""
        self.schedule = plan_schedule(plan, cpu_count())
        self.record = plan.schedule
        # lanes chosen from costs measured alone are tried against turns on the run's first clips (engines/trial.py)
        self.trial = (self.lanes and getattr(plan.cfg, "schedule", "auto") == "auto" and "measured" in plan.schedule
                      and len(plan.clips) >= PROBE_MIN_CLIPS)
        print(self.schedule.line() + ("; tried against turns on the first clips" if self.trial else ""), file=sys.stderr)

    def decode(self, clips, cfg, workers: int, cache=None, stats=None, variants=(), decode_timeout: float | None = DECODE_TIMEOUT,
               recipe=None) -> Iterator[ClipInput]:
        """Every clip decoded, in order (``parity.stream.decode_stream``); ``decode_timeout`` bounds each clip's decode;
        ``recipe``: another helper's preprocessing instead of ``cfg``'s."""
        return decode_stream(clips, cfg, workers, cache, stats, variants, decode_timeout, recipe)

    def _runner(self, lane, art):
        group = self.schedule.group_of(lane.name) if self.lanes else None
        if self.lanes and (group is not None or lane.name in self.schedule.unpinned):
            # a lane of its own: its own process, cores and thread count (a GPU lane: its process, unpinned)
            lane_art = dataclasses.replace(art, threads=group.threads) if group is not None else art
            # PARITY_PIN_LANES=0: lanes not pinned (a machine shared with other programs: a pinned lane cannot move off a
            # core another program holds)
            pin = group is not None and os.environ.get("PARITY_PIN_LANES", "1") != "0"
            return IsolatedRunner(lane.backend.name, lane_art, name=lane.name, timeout=self.timeout, cpus=group.cores if pin else ())
        if (self.isolate or lane.backend.isolated) and lane.backend.needs != "external":  # a user's program is its own process already
            return IsolatedRunner(lane.backend.name, art, name=lane.name, timeout=self.timeout)
        return lane.backend.make_runner(art)

    def infer(self, lanes, art, items: Iterable[ClipInput], on_clip: Callable) -> list[BackendRecord]:
        records, runnable = new_records(lanes, art)
        flow = LaneFlow(lanes, records, on_clip)
        runners, trial = {}, None
        try:
            for lane in runnable:
                try:
                    runner = self._runner(lane, art)
                    runner.activate()
                except Exception as exc:  # a backend that cannot start is that backend's error
                    flow.fail(lane.name, exc)
                    continue
                runners[lane.name] = runner
                records[lane.name].pid = getattr(runner, "pid", None) or os.getpid()
                flow.start(lane.name)
            trial = Trial(self, runnable, art, runners, records, self.record) if self.trial else None
            for item in items:
                self._infer_all(flow, runners, flow.add(item), art)
                flow.deliver()
                if trial is not None:
                    trial.tick()
            self._infer_all(flow, runners, flow.remainders(), art)
            flow.deliver()
        finally:
            if trial is not None:
                trial.close()
            for name, runner in runners.items():
                records[name].keep_evidence(runner)
                extra = runner.extra() if hasattr(runner, "extra") else []
                if extra:
                    records[name].notes.append(f"{name}: {len(extra)} entries of its logits file are not clips of this run: "
                                               + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
                try:
                    runner.deactivate()
                except Exception:  # a runner that failed mid-run may not deactivate cleanly
                    pass
        return [records[lane.name] for lane in lanes]

    @property
    def lanes(self) -> bool:
        return self.schedule is not None and self.schedule.kind == "lanes"

    def _infer_all(self, flow: LaneFlow, runners: dict, full: list, art) -> None:
        """Every full (lane, batch): one after another (``turns``), or all lanes at once, each group's in turn (``lanes``)."""
        if not self.lanes:
            for name, batch in full:
                self._infer(flow, runners, name, batch, art)
            return
        queues: dict[object, list] = {}
        for name, batch in full:
            group = self.schedule.group_of(name)
            queues.setdefault(group.lanes if group else name, []).append((name, batch))
        busy: dict[object, tuple] = {}  # the connection a lane answers on -> (queue key, name, batch)
        while queues or busy:
            for key in [k for k in queues if k not in {v[0] for v in busy.values()}]:
                name, batch = queues[key].pop(0)
                if not queues[key]:
                    del queues[key]
                runner = runners.get(name)
                if runner is None:
                    continue
                if not hasattr(runner, "submit"):
                    self._infer(flow, runners, name, batch, art)
                    continue
                try:
                    runner.submit(self._feed(flow, name, batch, art))
                except Exception as exc:
                    self._failed(flow, runners, name, exc)
                    continue
                busy[runner.connection] = (key, name, batch)
            if not busy:
                continue
            for conn in wait(list(busy), self.timeout) or list(busy)[:1]:  # none in time: its collect says so
                key, name, batch = busy.pop(conn)
                runner = runners[name]
                try:
                    outputs = runner.collect()
                    flow.done(name, batch, logit_rows(outputs, len(batch), art.views), runner.inference_time)
                except Exception as exc:
                    self._failed(flow, runners, name, exc)

    @staticmethod
    def _feed(flow: LaneFlow, name: str, batch: list[ClipInput], art) -> dict:
        """Lane ``name``'s feed for ``batch`` (its preprocessing variant's tensors), each input's shape recorded as fed."""
        feed = feed_dict(art.input_names, batch_feed(batch, flow.lanes[name].variant))
        for array in feed.values():
            flow.records[name].fed(array.shape)
        return feed

    @staticmethod
    def _failed(flow: LaneFlow, runners: dict, name: str, exc: BaseException) -> None:
        """Any backend failure is that backend's error (with what it proved before, an engine refused say); the others go on."""
        runner = runners.pop(name)
        flow.records[name].keep_evidence(runner)
        flow.fail(name, exc)
        try:
            runner.deactivate()
        except Exception:
            pass

    @classmethod
    def _infer(cls, flow: LaneFlow, runners: dict, name: str, batch: list[ClipInput], art) -> None:
        runner = runners[name]
        try:
            if getattr(runner, "takes_clips", False):  # a user's program: per-clip errors are the clips', not the backend's
                rows = runner.infer_clips(batch)
                flow.records[name].clip_errors.update(runner.clip_errors)
                flow.done(name, batch, rows, runner.inference_time)
                return
            outputs = runner.infer(cls._feed(flow, name, batch, art), check_inputs=False)
            flow.done(name, batch, logit_rows(outputs, len(batch), art.views), runner.inference_time)
        except Exception as exc:
            cls._failed(flow, runners, name, exc)
