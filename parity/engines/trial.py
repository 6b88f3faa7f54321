"""Lanes chosen from costs measured alone, confirmed on the run's own clips: the first clips run under ``lanes``, the next
under ``turns``, and the faster is kept for the rest of the run. Costs measured alone miss what only the run shows: a
decoder or another program on a lane's core, memory bandwidth, the harness's own work between calls."""
from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time

from ..errors import one_line
from ..schedule import MARGIN, Group

TRIAL_CLIPS = 6  # timed clips per schedule, after one clip of warm-up each


def head_start(workers: int) -> int:
    """Clips the first phase (lanes) does not time: its warm-up clip, and the ``2 x workers`` clips the decoders finished
    while the runners started (``parity.stream``'s window). Timed, they made lanes look faster than turns, which then
    started with no clip waiting (measured here: lanes 0.351 s/clip against turns 0.400 on 6 clips; run to the end, the
    two were equal within 1 %)."""
    return 1 + 2 * max(0, workers)


class Trial:
    def __init__(self, engine, lanes, art, runners: dict, records: dict, record: dict | None):
        self.engine, self.lanes, self.art, self.runners, self.records = engine, lanes, art, runners, records
        self.record = record if record is not None else {}
        self.lanes_schedule = engine.schedule
        self.phase, self.seen, self.last = "lanes", 0, None
        self.times: dict[str, list[float]] = {"lanes": [], "turns": []}
        self.parked: dict = {}  # the other schedule's runners, kept activated until the choice is made
        self.done = False
        self.skip = head_start(self.lanes_schedule.workers)  # the lanes phase's untimed clips; turns: 1

    def tick(self) -> None:
        """After each clip: time it; switch to turns after the lanes' clips; after the turns' clips, keep the faster."""
        if self.done:
            return
        now = time.perf_counter()
        if self.last is not None:
            self.seen += 1
            if self.seen > self.skip:  # a schedule's first clip warms it up (and lanes', the clips decoded ahead)
                self.times[self.phase].append(now - self.last)
        self.last = now
        if len(self.times[self.phase]) < TRIAL_CLIPS:
            return
        if self.phase == "lanes":
            self._to_turns()
        else:
            self._decide()
        self.last = time.perf_counter()  # starting runners is not a clip's time

    def _to_turns(self) -> None:
        cores = self.lanes_schedule.cores
        names = [lane.name for lane in self.lanes if lane.name in self.runners]
        self.engine.schedule = dataclasses.replace(self.lanes_schedule, kind="turns", groups=(Group(tuple(names), tuple(range(cores)), cores),),
                                                   unpinned=())
        started = {}
        try:
            for lane in self.lanes:
                if lane.name in self.runners:
                    runner = self.engine._runner(lane, self.art)
                    runner.activate()
                    started[lane.name] = runner
        except Exception as exc:  # turns cannot start: lanes stay, untried against it
            for runner in started.values():
                runner.deactivate()
            self.engine.schedule = self.lanes_schedule
            self.record["trial"] = {"error": one_line(exc)}
            self.done = True
            return
        self.parked = {name: self.runners[name] for name in started}
        self.runners.update(started)
        self.phase, self.seen, self.skip = "turns", 0, 1

    def _decide(self) -> None:
        lanes_s, turns_s = statistics.median(self.times["lanes"]), statistics.median(self.times["turns"])
        keep = "lanes" if lanes_s < turns_s * (1.0 - MARGIN) else "turns"  # as the chooser: a tie keeps the simpler one
        drop = self.parked if keep == "turns" else {name: self.runners[name] for name in self.parked}
        if keep == "lanes":
            self.runners.update(self.parked)
            self.engine.schedule = self.lanes_schedule
        else:  # the record says what ran for the rest of the run
            self.record.update(kind="turns", groups=[dataclasses.asdict(g) for g in self.engine.schedule.groups], unpinned=[])
        for runner in drop.values():
            try:
                runner.deactivate()
            except Exception:
                pass
        for name, runner in self.runners.items():
            self.records[name].pid = getattr(runner, "pid", None) or os.getpid()
        self.record["trial"] = {"clips": TRIAL_CLIPS, "lanes_s_per_clip": round(lanes_s, 3), "turns_s_per_clip": round(turns_s, 3),
                                "kept": keep}
        print(f"schedule: kept {keep} (on the run's first clips: lanes {lanes_s:.3f} s/clip, turns {turns_s:.3f} s/clip)",
              file=sys.stderr)
        self.parked, self.done = {}, True

    def close(self) -> None:
        """The run ended during the trial: the parked runners go."""
        for runner in self.parked.values():
            try:
                runner.deactivate()
            except Exception:
                pass
        self.parked = {}
