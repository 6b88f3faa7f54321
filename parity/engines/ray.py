"""The Ray engine (``--engine ray``, extra ``[ray]``): a run spread over the machines of a Ray cluster.

- Decode tasks spread over the nodes by their CPUs (one CPU each, ``SPREAD``), at most two per
  cluster CPU in flight. A node that offers no CPUs (a head started with ``--num-cpus 0``) takes no work.
- Each lane has one long-lived actor holding its activated runner, on a node that offers CPUs (one per
  GPU for GPU backends), so each model loads once per actor. Every lane's actors work on the same batch at once.
- The driver gathers the logits and decides, exactly as the local engine's run does.

No shared filesystem is needed: the driver reads the model files and the clips and sends their bytes
through the object store (``transfer``); actors keep model files in their node's artifact cache, checked
by sha256; the tensor cache stays on the driver. ``shared_paths`` (``--ray-shared-paths``) instead sends
paths, for clusters where every node sees the same files. ``--ray-address`` or ``RAY_ADDRESS`` joins an
existing cluster (``ray_join``: token authentication when it needs it); without either, a local
instance is started for the run and stopped after it.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..backends import BACKENDS, Status
from ..errors import HarnessError, one_line
from ..helper_inputs import decode
from ..inputs import ClipInput, clip_sha256, decode_clip, decoder_name
from ..optional import lazy, missing
from ..results import BackendRecord
from ..stream import DECODE_TIMEOUT
from .local import LaneFlow, batch_arrays, feed_dict, logit_rows
from .ray_join import join
from .transfer import clip_from_payload, clip_payload, receive, send

ray = lazy("ray")
scheduling_strategies = lazy("ray.util.scheduling_strategies")


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def _decode_task(clip, payload, cfg, index: int, cache, variants, recipe=None) -> tuple[ClipInput, str]:
    """One clip decoded on a cluster node, from its path (shared paths) or its bytes (written to a temp folder here)."""
    if payload is None:
        return decode(clip, cfg, index, cache, variants, recipe), _node()
    with tempfile.TemporaryDirectory(prefix="parity-clip-") as tmp:
        local = clip_from_payload(payload, clip.path.name, Path(tmp))
        item = decode(dataclasses.replace(clip, path=local), cfg, index, None, variants, recipe)
    item.clip = clip
    if item.error:
        item.error = item.error.replace(str(local), str(clip.path))
    return item, _node()


class _BackendActor:
    """Holds one lane's activated runner for the whole run (wrapped by ``ray.remote``)."""

    def __init__(self, backend: str, art, sent=None):
        self.status, self.reason, self.runner = "ok", None, None
        b = BACKENDS[backend]
        if sent is not None:  # the model files, from the object store into this node's cache
            try:
                art = receive(art, sent, ray.get)
            except Exception as exc:
                self.status, self.reason = "error", one_line(exc)
                return
        reason = b.availability(art)  # checked where the actor runs: that node's GPUs and packages
        if reason:
            self.status, self.reason = "unavailable", reason
            return
        try:
            self.runner = b.make_runner(art)
            self.runner.activate()
        except Exception as exc:  # reported to the driver as this lane's error
            self.status, self.reason = "error", one_line(exc)

    def ready(self) -> tuple[str, str | None, int, str]:
        return self.status, self.reason, os.getpid(), _node()

    def evidence(self) -> dict | None:
        return self.runner.evidence() if self.runner is not None and hasattr(self.runner, "evidence") else None

    def infer(self, input_names: tuple[str, ...], views: int, *tensors):
        feed = feed_dict(input_names, batch_arrays(list(tensors)))
        outputs = self.runner.infer(feed, check_inputs=False)
        return logit_rows(outputs, len(tensors), views), self.runner.inference_time, list(next(iter(feed.values())).shape)


def _ray():
    if missing("ray"):
        raise HarnessError("--engine ray needs Ray: pip install 'pptsm-parity[ray]'")
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, shared_paths: bool = False):
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.shared_paths = shared_paths
        self.cluster: dict | None = None  # what results.json's run records of the cluster (``facts``)
        self._joined: dict = {}
        self._used: set[str] = set()  # the nodes that did work
        self._started_here = False

    def facts(self) -> dict | None:
        return self.cluster

    def _connect(self):
        ray = _ray()
        if not ray.is_initialized():
            if self.address and self.address != "auto" and not self.address.startswith("ray://"):
                self._joined = join(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise HarnessError(f"cannot join the Ray cluster {self.address or '(local)'}: {one_line(exc)}") from None
            self._started_here = True
        if self.cluster is None:
            nodes = self._nodes(ray)
            self.cluster = {
                "address": self.address or "a local instance",
                "ray_version": self._joined.get("ray_version") or ray.__version__,
                "auth": self._joined.get("auth") or os.environ.get("RAY_AUTH_MODE", "disabled").lower(),
                "files": "shared paths" if self.shared_paths else "object store",
                "nodes": len(nodes),
                "cpus": _count(nodes.values(), "CPU"),
                "gpus": _count(nodes.values(), "GPU"),
            }
            if not self.cluster["cpus"]:
                raise HarnessError(f"the Ray cluster {self.cluster['address']} offers no CPUs: add a node that does (ray start --num-cpus N)")
        return ray

    @staticmethod
    def _nodes(ray) -> dict[str, dict]:
        """The live nodes' resources, by node id."""
        return {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}

    def _finish(self, ray) -> None:
        """Record (and say in one line) which nodes did the work."""
        if self.cluster is None:
            return
        nodes = self._nodes(ray)
        used = [nodes.get(n, {}) for n in self._used]
        self.cluster["used"] = {"nodes": len(used), "cpus": _count(used, "CPU"), "gpus": _count(used, "GPU")}
        c, u = self.cluster, self.cluster["used"]
        print(f"ray: the run used {u['nodes']} of {c['nodes']} nodes ({u['cpus']} CPUs, {u['gpus']} GPUs) at {c['address']} "
              f"(Ray {c['ray_version']}, auth {c['auth']}, files by {c['files']})", file=sys.stderr)

    def _on_driver(self, clip, cfg, index: int, cache, variants):
        """What the driver does before a clip goes to a task: its ``ClipInput`` when no task is needed (an
        unreadable clip, or every tensor in the tensor cache), else ``(payload, cache notes)``."""
        if clip.error or not clip.path.exists():
            return decode_clip(clip, cfg, index, None, variants)  # its one-line error, as the local engine words it
        try:
            if cache is not None and clip.path.suffix != ".npy":
                sha, decoder = clip_sha256(clip.path), decoder_name(clip.path)
                configs = {None: cfg, **{v: dataclasses.replace(cfg, variant=v) for v in variants}}
                tensors = {v: cache.get(sha, c, decoder) for v, c in configs.items()}
                notes = [f"{problem}; {clip.path} was decoded again" for problem in cache.take_problems()]
                if all(t is not None for t in tensors.values()):
                    return ClipInput(clip, index, tensor=tensors.pop(None), alt_tensors=tensors, sha256=sha)
                return clip_payload(clip.path), notes
            return clip_payload(clip.path), []
        except OSError as exc:
            return ClipInput(clip, index, error=f"{clip.path}: cannot read: {exc.strerror or exc}")
        except Exception as exc:  # a device or FIFO, and the like: this clip's error
            return ClipInput(clip, index, error=f"{clip.path}: cannot read: {one_line(exc)}")

    @staticmethod
    def _keep(cache, item: ClipInput, cfg, variants) -> None:
        """A tensor decoded on a node, into the driver's tensor cache."""
        if cache is None or not item.ok or not item.decoded:
            return
        decoder = decoder_name(item.clip.path)
        for v in (None, *variants):
            try:
                cache.put(item.sha256, cfg if v is None else dataclasses.replace(cfg, variant=v), decoder, item.feed(v))
            except OSError:  # a full disk costs the cache entry, not the clip
                pass

    def decode(self, clips, cfg, workers: int, cache=None, stats=None, variants=(), decode_timeout: float | None = DECODE_TIMEOUT,
               recipe=None) -> Iterator[ClipInput]:
        """Every clip decoded by Ray tasks, in order. A clip not decoded ``decode_timeout`` seconds after it
        reaches the head of the queue (every clip before it is done, so its task has had a CPU) is its
        error and its task is force-cancelled (its worker process killed). When the stream stops early
        (Ctrl-C, an error downstream) the tasks in flight are force-cancelled, not waited for.
        Joins the cluster now, so a cluster that cannot be joined is the run's one-line error before any output.
        ``recipe`` (another helper's preprocessing) decodes in the tasks too; its tensors skip the driver's tensor cache."""
        return self._decode(self._connect(), clips, cfg, cache if recipe is None else None, stats, variants, decode_timeout, recipe)

    def _decode(self, ray, clips, cfg, cache, stats, variants, decode_timeout, recipe=None) -> Iterator[ClipInput]:
        task = ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(_decode_task)
        window = max(2, 2 * self.cluster["cpus"])
        limit = decode_timeout if decode_timeout and decode_timeout > 0 else None
        pending: deque = deque()  # (index, clip, an ObjectRef or a ClipInput already known, cache notes)
        source = iter(clips)
        try:
            while True:
                while len(pending) < window:
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    index, clip = nxt
                    if self.shared_paths:
                        pending.append((index, clip, task.remote(clip, None, cfg, index, cache, variants, recipe), []))
                        continue
                    known = self._on_driver(clip, cfg, index, cache, variants)
                    if isinstance(known, ClipInput):
                        pending.append((index, clip, known, []))
                    else:
                        pending.append((index, clip, task.remote(clip, known[0], cfg, index, None, variants, recipe), known[1]))
                if not pending:
                    return
                index, clip, ref, notes = pending[0]
                if isinstance(ref, ClipInput):
                    item = ref
                else:
                    try:
                        item, node = ray.get(ref, timeout=limit)
                        self._used.add(node)
                        if not self.shared_paths:
                            self._keep(cache, item, cfg, variants)
                    except ray.exceptions.GetTimeoutError:
                        ray.cancel(ref, force=True)
                        if stats is not None:
                            stats.worker_restarts += 1
                        item = ClipInput(clip, index, seconds=limit, timed_out=True,
                                         error=f"{clip.path}: cannot decode: took longer than {limit:g} s (the decode time limit); its decode task was killed")
                    except ray.exceptions.RayError as exc:  # the decode worker died: that clip's error
                        item = ClipInput(clip, index, error=f"{clip.path}: cannot decode: the decode task failed ({type(exc).__name__})")
                item.cache_notes = notes + item.cache_notes
                pending.popleft()
                if stats is not None:
                    stats.count(item)
                yield item
        except BaseException:
            for _, _, ref, _ in pending:
                try:
                    if not isinstance(ref, ClipInput):
                        ray.cancel(ref, force=True)
                except Exception:  # a task that has finished meanwhile
                    pass
            raise

    def _actor_nodes(self, ray) -> list[str]:
        """Nodes for CPU lanes' actors: those offering CPUs, most first."""
        nodes = self._nodes(ray)
        return sorted((n for n, r in nodes.items() if r.get("CPU", 0) > 0), key=lambda n: -nodes[n]["CPU"])

    def infer(self, lanes, art, items: Iterable[ClipInput], on_clip: Callable):
        ray = self._connect()
        # Availability is decided where each actor runs (that node's GPU and packages), not here.
        records = {lane.name: BackendRecord(lane.name, lane.backend.precision, lane.description, "ok", batch=lane.batch, kind=lane.kind)
                   for lane in lanes}
        gpus = self.cluster["gpus"]
        runnable = []
        for lane in lanes:
            if lane.backend.needs == "external":
                records[lane.name].status, records[lane.name].reason = "unavailable", "unavailable: a user's program runs with --engine local"
            elif lane.backend.device == "gpu" and not gpus:
                records[lane.name].status, records[lane.name].reason = "unavailable", "unavailable: no GPU in the Ray cluster"
            elif art.calibration is not None and lane.backend.needs_calibration and lane.backend.calibrate is None and not self.shared_paths:
                records[lane.name].status, records[lane.name].reason = (
                    "unavailable", "unavailable: INT8 calibration reads its clips where the actor runs: needs --ray-shared-paths")
            else:
                runnable.append(lane)
        calibrated = [lane for lane in runnable if lane.backend.calibrate is not None]
        if not self.shared_paths and art.calibration is not None and calibrated:
            # calibrated here, where the clips are (the artifact cache keeps it): its actors get the model, not the clips
            models = {}
            for lane in calibrated:
                try:
                    models[lane.backend.name] = models.get(lane.backend.name) or lane.backend.calibrate(art)
                except Exception as exc:  # a calibration set that cannot be used: that lane's error, as where it runs locally
                    records[lane.name].status, records[lane.name].reason = Status.ERROR, one_line(exc)
                    runnable.remove(lane)
            art = dataclasses.replace(art, calibrated=models)
        actor_class = ray.remote(_BackendActor)
        sent = None if self.shared_paths or not runnable else send(art, ray.put)
        cpu_nodes = self._actor_nodes(ray)
        refs: dict[tuple, object] = {}  # (clip index, preprocessing variant) -> the tensor in the object store

        def deliver(item, rows):
            for key in [k for k in refs if k[0] == item.index]:
                refs.pop(key)
            on_clip(item, rows)

        flow = LaneFlow(lanes, records, deliver)
        actors: dict[str, list] = {}
        try:
            for number, lane in enumerate(runnable):
                if lane.backend.device == "gpu":  # one per GPU, wherever the GPUs are
                    group = [actor_class.options(num_cpus=0, num_gpus=1).remote(lane.backend.name, art, sent) for _ in range(gpus)]
                else:  # pinned to a node that offers CPUs, lanes spread over them
                    place = scheduling_strategies.NodeAffinitySchedulingStrategy(cpu_nodes[number % len(cpu_nodes)], soft=False)
                    group = [actor_class.options(num_cpus=0, scheduling_strategy=place).remote(lane.backend.name, art, sent)]
                actors[lane.name] = group
                try:
                    status, reason, records[lane.name].pid, node = ray.get(group[0].ready.remote())
                    self._used.add(node)
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
                self._run_batches(ray, flow, actors, flow.add(item), refs, art, turn)
                turn += 1
                flow.deliver()
            self._run_batches(ray, flow, actors, flow.remainders(), refs, art, turn)
            flow.deliver()
        finally:
            for name, group in actors.items():
                try:  # what the lane's first actor can prove about what ran
                    records[name].evidence = ray.get(group[0].evidence.remote(), timeout=30) or records[name].evidence
                except Exception:  # a dead actor proves nothing more; its error is already the lane's
                    pass
                for actor in group:
                    ray.kill(actor)
            self._finish(ray)
            if self._started_here:
                ray.shutdown()
        return [records[lane.name] for lane in lanes]

    @staticmethod
    def _run_batches(ray, flow: LaneFlow, actors: dict, batches, refs: dict, art, turn: int) -> None:
        """Every lane's full batch at once (each on its own actor), then gather."""
        calls = []
        for name, batch in batches:
            group = actors[name]
            actor = group[turn % len(group)]
            variant = flow.lanes[name].variant
            calls.append((name, batch, actor.infer.remote(art.input_names, art.views, *[refs[(i.index, variant)] for i in batch])))
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


def _count(resources: Iterable[dict], kind: str) -> int:
    return int(sum(r.get(kind, 0) for r in resources))
