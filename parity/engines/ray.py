"""The Ray engine (``--engine ray``, extra ``[ray]``): a run spread over the machines of a Ray cluster.

- Decode tasks run anywhere in the cluster (one CPU each), at most two per cluster CPU in flight.
- Each lane has one long-lived actor holding its activated runner (one per GPU for GPU backends),
  so each model loads once per actor. Every lane's actors work on the same batch at once.
- The driver gathers the logits and decides, exactly as the local engine's run does.

Paths (models, clips, caches) must mean the same file on every node: a shared filesystem.
``--ray-address`` or ``RAY_ADDRESS`` joins an existing cluster; without either, a local
instance is started for the run and stopped after it.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from ..errors import HarnessError, one_line
from ..inputs import ClipInput, decode_clip
from ..results import BackendRecord
from ..stream import DECODE_TIMEOUT
from .local import LaneFlow, logit_rows


class _BackendActor:
    """Holds one lane's activated runner for the whole run (wrapped by ``ray.remote``)."""

    def __init__(self, backend: str, art):
        from ..backends import BACKENDS

        self.status, self.reason, self.runner = "ok", None, None
        b = BACKENDS[backend]
        reason = b.availability(art)  # checked where the actor runs: that node's GPUs and packages
        if reason:
            self.status, self.reason = "unavailable", reason
            return
        try:
            self.runner = b.make_runner(art)
            self.runner.activate()
        except Exception as exc:  # reported to the driver as this lane's error
            self.status, self.reason = "error", one_line(exc)

    def ready(self) -> tuple[str, str | None, int]:
        return self.status, self.reason, os.getpid()

    def evidence(self) -> dict | None:
        return self.runner.evidence() if self.runner is not None and hasattr(self.runner, "evidence") else None

    def infer(self, input_name: str, *tensors):
        import numpy as np

        feed = tensors[0] if len(tensors) == 1 else np.concatenate(tensors)
        outputs = self.runner.infer({input_name: feed}, check_inputs=False)
        return logit_rows(outputs, len(tensors)), self.runner.inference_time, list(feed.shape)


def _ray():
    try:
        import ray
    except ImportError:
        raise HarnessError("--engine ray needs Ray: pip install 'pptsm-parity[ray]'") from None
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS")
        self._started_here = False

    def _connect(self):
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise HarnessError(f"cannot join the Ray cluster {self.address or '(local)'}: {one_line(exc)}") from None
            self._started_here = True
        return ray

    def decode(self, clips, cfg, workers: int, cache=None, stats=None, variants=(), decode_timeout: float | None = DECODE_TIMEOUT) -> Iterator[ClipInput]:
        """Every clip decoded by Ray tasks, in order. A clip not decoded ``decode_timeout`` seconds after it
        reaches the head of the queue (every clip before it is done, so its task has had a CPU) is its
        error and its task is force-cancelled (its worker process killed). When the stream stops early
        (Ctrl-C, an error downstream) the tasks in flight are force-cancelled, not waited for."""
        ray = self._connect()
        task = ray.remote(num_cpus=1, max_retries=0)(decode_clip)
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        limit = decode_timeout if decode_timeout and decode_timeout > 0 else None
        pending: deque = deque()
        source = iter(clips)
        try:
            while True:
                while len(pending) < window:
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    index, clip = nxt
                    pending.append((index, clip, task.remote(clip, cfg, index, cache, variants)))
                if not pending:
                    return
                index, clip, ref = pending[0]
                try:
                    item = ray.get(ref, timeout=limit)
                except ray.exceptions.GetTimeoutError:
                    ray.cancel(ref, force=True)
                    if stats is not None:
                        stats.worker_restarts += 1
                    item = ClipInput(clip, index, seconds=limit, timed_out=True,
                                     error=f"{clip.path}: cannot decode: took longer than {limit:g} s (the decode time limit); its decode task was killed")
                except ray.exceptions.RayError as exc:  # the decode worker died: that clip's error
                    item = ClipInput(clip, index, error=f"{clip.path}: cannot decode: the decode task failed ({type(exc).__name__})")
                pending.popleft()
                if stats is not None:
                    stats.count(item)
                yield item
        except BaseException:
            for _, _, ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # a task that has finished meanwhile
                    pass
            raise

    def infer(self, lanes, art, items: Iterable[ClipInput], on_clip: Callable):
        ray = self._connect()
        # Availability is decided where each actor runs (that node's GPU and packages), not here.
        records = {lane.name: BackendRecord(lane.name, lane.backend.precision, lane.description, "ok", batch=lane.batch) for lane in lanes}
        gpus = int(ray.cluster_resources().get("GPU", 0))
        runnable = []
        for lane in lanes:
            if lane.backend.needs == "external":
                records[lane.name].status, records[lane.name].reason = "unavailable", "unavailable: a user's program runs with --engine local"
            elif lane.backend.device == "gpu" and not gpus:
                records[lane.name].status, records[lane.name].reason = "unavailable", "unavailable: no GPU in the Ray cluster"
            else:
                runnable.append(lane)
        actor_class = ray.remote(_BackendActor)
        refs: dict[tuple, object] = {}  # (clip index, preprocessing variant) -> the tensor in the object store

        def deliver(item, rows):
            for key in [k for k in refs if k[0] == item.index]:
                refs.pop(key)
            on_clip(item, rows)

        flow = LaneFlow(lanes, records, deliver)
        actors: dict[str, list] = {}
        try:
            for lane in runnable:
                gpu = lane.backend.device == "gpu"
                group = [actor_class.options(num_cpus=0, num_gpus=1 if gpu else 0).remote(lane.backend.name, art) for _ in range(gpus if gpu else 1)]
                actors[lane.name] = group
                try:
                    status, reason, records[lane.name].pid = ray.get(group[0].ready.remote())
                except ray.exceptions.RayError as exc:
                    status, reason = "error", f"the backend actor died: {type(exc).__name__}"
                if status == "ok":
                    flow.start(lane.name)
                elif status == "unavailable":
                    records[lane.name].status, records[lane.name].reason = status, reason
                else:
                    flow.fail(lane.name, reason)
            turn = 0
            for item in items:
                refs[(item.index, None)] = ray.put(item.tensor)
                for variant, tensor in item.alt_tensors.items():
                    refs[(item.index, variant)] = ray.put(tensor)
                self._run_batches(ray, flow, actors, flow.add(item), refs, art.input_name, turn)
                turn += 1
                flow.deliver()
            self._run_batches(ray, flow, actors, flow.remainders(), refs, art.input_name, turn)
            flow.deliver()
        finally:
            for name, group in actors.items():
                try:  # what the lane's first actor can prove about what ran
                    records[name].evidence = ray.get(group[0].evidence.remote(), timeout=30) or records[name].evidence
                except Exception:  # a dead actor proves nothing more; its error is already the lane's
                    pass
                for actor in group:
                    ray.kill(actor)
            if self._started_here:
                ray.shutdown()
        return [records[lane.name] for lane in lanes]

    @staticmethod
    def _run_batches(ray, flow: LaneFlow, actors: dict, batches, refs: dict, input_name: str, turn: int) -> None:
        """Every lane's full batch at once (each on its own actor), then gather."""
        calls = []
        for name, batch in batches:
            group = actors[name]
            actor = group[turn % len(group)]
            variant = flow.lanes[name].variant
            calls.append((name, batch, actor.infer.remote(input_name, *[refs[(i.index, variant)] for i in batch])))
        for name, batch, call in calls:
            try:
                rows, seconds, shape = ray.get(call)
                flow.records[name].fed(shape)  # the shape the actor's runner was given
                flow.done(name, batch, rows, seconds)
            except ray.exceptions.RayTaskError as exc:
                flow.fail(name, one_line(exc.cause) if getattr(exc, "cause", None) else one_line(exc))
            except ray.exceptions.RayError as exc:
                flow.fail(name, f"the backend actor died ({type(exc).__name__})")
            except Exception as exc:  # wrong row count and the like
                flow.fail(name, exc)
