"""Measuring what the schedule is chosen from (``parity.schedule``): each lane's seconds per batch at 1 thread and at
every core, and the decode's core-seconds per clip, on the run's first clip. Kept in the artifact cache, keyed by the
machine, the models and the lanes, so a later run of the same set measures nothing."""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from ..artifacts import sha256_file, sha256_json
from ..backends.isolated import IsolatedRunner
from ..errors import one_line
from ..helper_inputs import arrays_of, recipe_tensor
from ..machine import cpu_features, cpu_name
from ..preprocess import load_clip_tensor
from ..schedule import Cost, Group, Measured, Schedule, choose, spread

TIMED_RUNS = 2  # after one warm-up call
STAGE = "schedule-costs"


def _is_recipe(pre) -> bool:
    """``measure``'s preprocessing is PP-TSM's ``PreprocessConfig``, or another helper's recipe (it has ``preprocess``)."""
    return hasattr(pre, "preprocess")


def cost_key(lanes, art, cores: int, pre) -> str:
    """The machine (its CPU's name and instruction sets), the lanes' backends and batches, the models' contents and the
    input: what the costs depend on."""
    models = {}
    if art.paddle_model is not None:
        models["paddle"] = [sha256_file(p) for p in (art.paddle_model.model_file, art.paddle_model.params_file)]
    if art.onnx is not None:
        models["onnx"] = sha256_file(art.onnx)
    lanes = sorted({(lane.backend.name, lane.batch) for lane in lanes})
    return sha256_json({"cpu": cpu_name(), "cpu_features": cpu_features(), "cores": cores, "lanes": lanes, "models": models,
                        "pre": pre.to_dict() if hasattr(pre, "to_dict") else str(pre), "version": 1})


def measure(lanes, art, first_clip, pre, cores: int, timeout: float | None = None, cached_only: bool = False) -> Measured | None:
    """The costs of ``lanes`` (cached under ``cost_key``, else measured now on ``first_clip``; None if ``cached_only``)."""
    key = cost_key(lanes, art, cores, pre)
    path = Path(art.cache.root) / STAGE / f"{key}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            costs = {c["name"]: Cost(**c) for c in data["costs"]}
            costs = [dataclasses.replace(costs[lane.name]) if lane.name in costs else None for lane in lanes]
            if all(costs):
                return Measured(costs, data["decode"], "cached", 0.0, data.get("startup", 0.0))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged entry: measured again
    if cached_only:
        return None
    started = time.perf_counter()
    cpu = time.process_time()
    # PP-TSM's tensor, or another helper's arrays (``pre`` is then its recipe): one per model input
    tensor = recipe_tensor(pre, Path(first_clip.path)) if _is_recipe(pre) else load_clip_tensor(Path(first_clip.path), pre)
    decode = time.process_time() - cpu  # core-seconds (decoders may use several threads)
    costs, startup, done = [], 0.0, {}
    for lane in lanes:
        b = lane.backend
        if (b.name, lane.batch) in done:
            costs.append(dataclasses.replace(done[(b.name, lane.batch)], name=lane.name))
            continue
        feed = {name: np.concatenate([a] * lane.batch) if lane.batch > 1 else a for name, a in zip(art.input_names, arrays_of(tensor))}
        if b.device != "cpu":  # a GPU's latency does not depend on CPU threads
            one, boot = _time(b.name, art, feed, (), timeout)
            every = one
        else:
            one, boot = _time(b.name, dataclasses.replace(art, threads=1), feed, (0,), timeout)
            every, _ = _time(b.name, dataclasses.replace(art, threads=cores), feed, (), timeout) if cores > 1 else (one, 0.0)
        cost = Cost(lane.name, one, every, cores, b.device)
        done[(b.name, lane.batch)] = cost
        costs.append(cost)
        startup += boot
    measured = Measured(costs, decode, "measured", time.perf_counter() - started, startup)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"costs": [dataclasses.asdict(c) for c in costs], "decode": decode, "startup": startup}, indent=1))
    tmp.replace(path)
    return measured


def _time(backend: str, art, feed: dict, cpus: tuple[int, ...], timeout: float | None) -> tuple[float, float]:
    """(median seconds per call, seconds to start) of ``backend`` in its own process on ``cpus`` (empty: any)."""
    runner = IsolatedRunner(backend, art, name=f"{backend}-probe", timeout=timeout, cpus=cpus)
    start = time.perf_counter()
    runner.activate()
    boot = time.perf_counter() - start
    try:
        times = []
        for i in range(1 + TIMED_RUNS):
            runner.infer(feed, check_inputs=False)
            if i:
                times.append(runner.inference_time)
        return statistics.median(times), boot
    except Exception as exc:  # measured as unusable: the chooser keeps it in turns
        raise RuntimeError(f"{backend}: cannot measure its cost: {one_line(exc)}") from exc
    finally:
        runner.deactivate()


PROBE_MIN_CLIPS = 50  # fewer clips: measuring (two short-lived processes per backend) costs more than a schedule saves


def plan_schedule(plan, cores: int) -> Schedule:
    """The run's schedule, from ``--schedule`` and the measured costs; sets ``plan.schedule`` (its record) and, unless
    ``--workers`` was given, ``plan.budget.workers``. ``--threads`` keeps turn-taking at that thread count."""
    cfg, art, budget = plan.cfg, plan.art, plan.budget
    mode = getattr(cfg, "schedule", "auto")
    lanes = [lane for lane in plan.selection.lanes if lane.backend.availability(art) is None]
    names = [lane.name for lane in lanes]
    turns = Schedule("turns", (Group(tuple(names), tuple(range(cores)), budget.backend_threads),), budget.workers, cores,
                     0.0, 0.0, 0.0, 0.0)
    why = _turns_only(plan, lanes, mode, budget)
    measured = None
    if why:
        schedule = dataclasses.replace(turns, reason=why)
    elif mode == "lanes":  # as asked: the best lanes by the costs measured before, else the lanes spread evenly
        measured = measure(lanes, art, None, plan.recipe or plan.pre, cores, cached_only=True)
        schedule = (dataclasses.replace(choose(measured.costs, cores, measured.decode, force_lanes=True), reason="as asked")
                    if measured else spread(names, cores))
    else:
        few = len(plan.clips) < PROBE_MIN_CLIPS  # then only costs measured before are used
        try:
            measured = measure(lanes, art, next(iter(plan.clips))[1], plan.recipe or plan.pre, cores, cfg.backend_timeout, cached_only=few)
        except Exception as exc:  # a backend that cannot be measured: today's schedule, and the run goes on
            schedule = dataclasses.replace(turns, reason=one_line(exc))
        if measured is None:
            if few:
                schedule = dataclasses.replace(turns, reason=f"{len(plan.clips)} clips, too few to measure; auto measures from "
                                                             f"{PROBE_MIN_CLIPS}")
        else:
            schedule = choose(measured.costs, cores, measured.decode)
            saving = (schedule.turns - schedule.predicted) * len(plan.clips)
            if schedule.kind == "lanes" and saving <= measured.startup:
                schedule = dataclasses.replace(choose(measured.costs, cores, measured.decode, allow_lanes=False),
                                               reason=f"lanes would save {saving:.1f} s, less than starting them ({measured.startup:.1f} s)")
            if schedule.kind == "turns":
                schedule = dataclasses.replace(schedule, workers=budget.workers,
                                               groups=(dataclasses.replace(schedule.groups[0], threads=budget.backend_threads),))
    if budget.workers_given:
        schedule = dataclasses.replace(schedule, workers=budget.workers)
    plan.budget = dataclasses.replace(budget, workers=schedule.workers)
    record = schedule.to_dict()
    if measured is not None:
        record.update(measured=measured.source, measure_seconds=round(measured.seconds, 2), startup_seconds=round(measured.startup, 2))
    plan.schedule = record
    return schedule


def _turns_only(plan, lanes, mode: str, budget) -> str:
    """Why this run keeps turn-taking whatever the costs ("" when a schedule may be chosen)."""
    if mode == "turns":
        return "--schedule turns (the default)"
    if budget.threads_given:
        return "--threads given"
    if plan.recipe is not None:
        return "another helper's inputs"
    if any(lane.backend.needs == "external" for lane in lanes):
        return "a user's own program runs as it is"
    if len(lanes) < 2 and mode == "auto":
        return "one backend"
    return ""
