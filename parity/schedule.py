"""Which schedule runs the backends fastest on this machine, chosen from measured costs. Pure: numbers in, a plan out.

Two kinds of schedule:

* ``turns``: the backends take turns on each batch, each with every core (the harness's original schedule);
* ``lanes``: each group of backends in its own process, on its own cores and thread count, all groups at once
  (backends of one group take turns on its cores); decoding takes the cores left over and the time lanes leave idle.

The cost model, per clip, for a schedule of groups ``g`` (``s_g`` cores each, ``L_i(s)`` a backend's latency at ``s``
threads, ``D`` the decode's core-seconds, ``C`` the cores):

    busy_g = sum over g's backends of L_i(s_g)                      (its backends take turns on its cores)
    T      = max( max_g busy_g,  GPU time,  (sum_g s_g * busy_g + host time of GPU backends + D) / C )

A group holds all its cores while it runs (a multi-threaded op waits for its slowest thread, so a decode slice on one
of its cores stalls all of them): ``s_g * busy_g`` core-seconds. ``turns`` is the one-group case, where this gives
``sum L_i(C) + D / C``; with perfect scaling (``L(C) = L(1) / C``) that is the limit, and no schedule beats it.

The limit is every backend's single-thread work plus the decode over the cores: ``(sum L_i(1) + D) / C`` (and never
less than the GPU's own time). ``L_i(s)`` between 1 and ``C`` threads follows Amdahl's law fitted to the two measured
points. GPU backends' latency does not depend on CPU threads; their host thread is busy while they run, and one GPU
serves them one after another.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

SCHEDULES = ("auto", "turns", "lanes")
# ``lanes`` is chosen only when it is predicted this much faster than ``turns`` (ties and noise keep the simple one).
MARGIN = 0.05
# Passive waiting for OpenMP thread pools (Paddle's oneDNN uses Intel's libiomp5, which reads both): a thread that
# finished its share sleeps at once instead of spinning for 200 ms on a core another backend or a decode needs.
PASSIVE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def passive_wait(environ=None) -> dict[str, str]:
    """Set ``PASSIVE_WAIT`` in ``environ`` (default ``os.environ``) where the user has not set it; returns what was set.
    Call it before Paddle (its OpenMP runtime reads them once, when it starts)."""
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in PASSIVE_WAIT.items() if k not in environ}
    environ.update(added)
    return added


@dataclass(frozen=True)
class Cost:
    """A lane's measured seconds per batch: ``one`` at 1 thread, ``every`` at ``threads`` threads (a GPU backend:
    its device latency, both the same)."""

    name: str
    one: float
    every: float
    threads: int = 1
    device: str = "cpu"

    def at(self, threads: int) -> float:
        """Seconds at ``threads`` threads: Amdahl's law through the two measured points."""
        if self.device != "cpu" or threads >= self.threads or self.threads <= 1:
            return self.every if threads >= self.threads else self.one
        return self.one * ((1.0 - self.parallel) + self.parallel / threads)

    @property
    def parallel(self) -> float:
        """Amdahl's parallel fraction fitted to ``one`` and ``every`` (0: no gain from threads, 1: perfect)."""
        if self.device != "cpu" or self.threads <= 1 or self.one <= 0:
            return 0.0
        return min(1.0, max(0.0, (1.0 - self.every / self.one) / (1.0 - 1.0 / self.threads)))


@dataclass(frozen=True)
class Group:
    """Backends that share cores and take turns on them; ``cores`` are core indices (empty: not pinned)."""

    lanes: tuple[str, ...]
    cores: tuple[int, ...]
    threads: int


@dataclass(frozen=True)
class Schedule:
    kind: str  # "turns" | "lanes"
    groups: tuple[Group, ...]
    workers: int  # decode processes
    cores: int
    predicted: float  # seconds per clip, by the cost model
    turns: float  # the same prediction for ``turns``
    limit: float  # (sum of single-thread work + decode) / cores
    decode: float  # decode core-seconds per clip
    costs: tuple[Cost, ...] = ()
    reason: str = ""
    unpinned: tuple[str, ...] = ()  # GPU lanes: their own processes, concurrent, not pinned

    def group_of(self, lane: str) -> Group | None:
        return next((g for g in self.groups if lane in g.lanes), None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["groups"] = [asdict(g) for g in self.groups]
        data["costs"] = [asdict(c) for c in self.costs]
        for key in ("predicted", "turns", "limit", "decode"):
            data[key] = round(data[key], 4)
        data["ratio"] = round(self.predicted / self.limit, 3) if self.limit > 0 else None
        return data

    def line(self) -> str:
        """One terminal line: what runs where, and the predicted time beside the limit."""
        if self.kind == "turns":
            threads = self.groups[0].threads if self.groups else self.cores
            what = f"backends take turns, {threads} thread{'s' if threads != 1 else ''} each"
        else:
            parts = [f"{'+'.join(g.lanes)} on core{'s' if len(g.cores) > 1 else ''} {_cores(g.cores)} ({g.threads} thread"
                     f"{'s' if g.threads > 1 else ''})" for g in self.groups]
            parts += [f"{name} (GPU)" for name in self.unpinned]
            what = "lanes: " + ", ".join(parts)
        numbers = (f"predicted {self.predicted:.3f} s/clip, limit {self.limit:.3f}" if self.limit > 0 else "")
        tail = f"; {numbers}" if numbers else ""
        return f"schedule: {what}; {self.workers} decode worker{'s' if self.workers != 1 else ''}{tail}" + (
            f" ({self.reason})" if self.reason else "")


def _cores(cores: tuple[int, ...]) -> str:
    return f"{cores[0]}-{cores[-1]}" if len(cores) > 2 and list(cores) == list(range(cores[0], cores[-1] + 1)) else ",".join(map(str, cores))


def limit(costs: list[Cost], decode: float, cores: int) -> float:
    """Every clip's single-thread work over the cores (and never under the GPU's own time)."""
    work = sum(c.one for c in costs) + decode
    gpu = sum(c.one for c in costs if c.device != "cpu")
    return max(work / cores, gpu)


def predict(groups: list[tuple[list[Cost], int]], gpu: list[Cost], decode: float, cores: int) -> float:
    """Seconds per clip of CPU groups ``(costs, cores)`` running at once, GPU lanes beside them, decode on the rest."""
    busy = [sum(c.at(s) for c in members) for members, s in groups]
    held = sum(s * b for (_, s), b in zip(groups, busy))
    gpu_time = sum(c.one for c in gpu)
    return max(max(busy, default=0.0), gpu_time, (held + gpu_time + decode) / cores)


def turns(costs: list[Cost], decode: float, cores: int) -> float:
    """Seconds per clip when every backend takes its turn with every core (GPU lanes in the same turns)."""
    cpu = [c for c in costs if c.device == "cpu"]
    gpu_time = sum(c.one for c in costs if c.device != "cpu")
    busy = sum(c.at(cores) for c in cpu) + gpu_time
    return max(busy, (cores * sum(c.at(cores) for c in cpu) + gpu_time + decode) / cores)


def choose(costs: list[Cost], cores: int, decode: float = 0.0, allow_lanes: bool = True, force_lanes: bool = False) -> Schedule:
    """The schedule with the best predicted throughput for these measured costs on ``cores`` cores (``force_lanes``: the
    best ``lanes`` schedule, even when turn-taking is predicted faster)."""
    cores = max(1, cores)
    cpu = [c for c in costs if c.device == "cpu"]
    gpu = [c for c in costs if c.device != "cpu"]
    best_turns = turns(costs, decode, cores)
    bound = limit(costs, decode, cores)
    turn_schedule = Schedule("turns", (Group(tuple(c.name for c in costs), tuple(range(cores)), cores),), cores, cores,
                             best_turns, best_turns, bound, decode, tuple(costs))
    if not allow_lanes or len(costs) < 2 and not gpu:
        return turn_schedule
    best: tuple[float, list[tuple[list[Cost], int]]] | None = None
    for partition in _partitions(cpu, cores):
        sizes = _allocate(partition, gpu, decode, cores)
        if sizes is None:
            continue
        groups = list(zip(partition, sizes))
        t = predict(groups, gpu, decode, cores)
        if best is None or t < best[0] - 1e-12:
            best = (t, groups)
    if best is None or (best[0] >= best_turns * (1.0 - MARGIN) and not force_lanes):
        return turn_schedule
    t, groups = best
    pinned, start = [], 0
    for members, s in sorted(groups, key=lambda g: -g[1]):
        pinned.append(Group(tuple(c.name for c in members), tuple(range(start, start + s)), s))
        start += s
    # One decode worker per core, as with turns: niced, they take what lanes leave idle; and when every lane waits
    # for the next clip, a single worker would leave all but one core idle (measured: 2.2 s/clip instead of 1.2).
    return Schedule("lanes", tuple(pinned), cores, cores, t, best_turns, bound, decode, tuple(costs),
                    unpinned=tuple(c.name for c in gpu))


def _partitions(items: list, cores: int) -> Iterator[list[list]]:
    """Set partitions of ``items`` into at most ``cores`` groups (none when there is nothing to place on the CPU)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest, cores):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]
        if len(part) < cores:
            yield [[first]] + part


def _allocate(partition: list[list[Cost]], gpu: list[Cost], decode: float, cores: int) -> list[int] | None:
    """Cores per group: one each, then each further core to the group where it cuts the prediction most; cores that
    cut nothing are left to decoding."""
    if len(partition) > cores:
        return None
    sizes = [1] * len(partition)
    while sum(sizes) < cores:
        now = predict(list(zip(partition, sizes)), gpu, decode, cores)
        trials = []
        for i in range(len(sizes)):
            more = sizes[:i] + [sizes[i] + 1] + sizes[i + 1:]
            trials.append((predict(list(zip(partition, more)), gpu, decode, cores), i))
        t, i = min(trials)
        if t >= now - 1e-12:
            break
        sizes[i] += 1
    return sizes


@dataclass
class Measured:
    """What a run measured before choosing: each lane's costs, the decode's core-seconds per clip, and how."""

    costs: list[Cost] = field(default_factory=list)
    decode: float = 0.0
    source: str = "measured"  # "measured" | "cached"
    seconds: float = 0.0  # what measuring took
    startup: float = 0.0  # seconds to start the lanes' own processes (what ``lanes`` costs beyond ``turns``)


def spread(names: list[str], cores: int) -> Schedule:
    """``lanes`` without measurements (``--schedule lanes``): the lanes dealt round-robin over at most ``cores`` groups,
    the cores split evenly among the groups."""
    k = max(1, min(len(names), cores))
    each = max(1, cores // k)
    groups = tuple(Group(tuple(names[i::k]), tuple(range(g * each, (g + 1) * each)), each) for g, i in enumerate(range(k)))
    return Schedule("lanes", groups, cores, cores, 0.0, 0.0, 0.0, 0.0, reason="as asked, not measured")
