"""What a run keeps of each clip as it streams by (its record, each lane's logits row, thumbnails and the worst
clips' tensors), and the stream that feeds it: decode -> admit -> every lane."""
from __future__ import annotations

import heapq

import numpy as np

from ..backends import Status
from ..compare import badness, clip_verdict
from ..engines import get_engine
from ..golden import ClipChanged, NotInGolden
from ..helper_inputs import arrays_of
from ..inputs import ClipInput, TensorCache
from ..preprocess import MEAN, STD
from ..progress import progress
from ..results import BackendRecord, ClipRecord
from ..stream import DecodeStats

MAX_THUMBNAIL_CLIPS = 24
REPRO_CLIPS = 4  # the worst failing clips whose input tensors go into the repro bundle (and --advise verifies on)


class Collector:
    """Each clip's record and logits rows, and (for the first clips that fail or flip anywhere) small frames for
    the report, and the tensors of the worst ones by ``compare.badness``."""

    def __init__(self, selection, cfg, golden=None, recipe=None):
        self.selection, self.cfg, self.golden, self.recipe = selection, cfg, golden, recipe
        self.clip_records: list[ClipRecord] = []
        self.rows: dict[str, list[np.ndarray]] = {}  # one row per clip: a model's views aggregated (``recipe.aggregate``)
        self.view_rows: dict[str, list[np.ndarray]] = {}  # [views, C] per clip, for lanes whose model gives several rows
        self.paths: list[str] = []
        self.labels: list[int | None] = []
        self.frames: dict[str, np.ndarray] = {}
        self.changed = 0
        self._pending: dict[int, ClipRecord] = {}  # admitted clips not yet delivered
        self.worst: list[tuple] = []  # a min-heap of (compare.badness, path, label, tensor), at most REPRO_CLIPS

    def admit(self, item: ClipInput) -> bool:
        """Record a decoded clip; True when the backends should run it."""
        record = ClipRecord(path=str(item.clip.path), label=item.clip.label, status=Status.OK, sha256=item.sha256, index=item.index)
        if item.ok and self.golden is not None:
            try:
                item.golden_row = self.golden.row_for(str(item.clip.path), item.sha256)
            except NotInGolden as exc:
                item.tensor, item.error = None, str(exc)
                self.changed += isinstance(exc, ClipChanged)
        if not item.ok:
            record.status, record.error = Status.ERROR, item.error
        self.clip_records.append(record)
        self._pending[item.index] = record
        return item.ok

    def on_clip(self, item: ClipInput, rows: dict[str, np.ndarray]) -> None:
        record = self._pending.pop(item.index)
        views = {name: row for name, row in rows.items() if row.ndim == 2}  # [views, C]: the model's rows for this clip
        rows = {name: self._aggregate(row) if name in views else row for name, row in rows.items()}
        if self.golden is not None:
            rows = {**rows, self.selection.reference: item.golden_row}
        classes = len(next(iter(rows.values()))) if rows else None
        label = item.clip.label
        if classes is not None and label is not None and not 0 <= label < classes:
            record.status, record.error = Status.ERROR, f"{item.clip.path}: label {label} is outside the model's {classes} classes (0..{classes - 1})"
            return
        for name, row in rows.items():
            self.rows.setdefault(name, []).append(row)
        for name, row in views.items():
            self.view_rows.setdefault(name, []).append(row)
        if views:
            record.views = len(next(iter(views.values())))
        self.paths.append(str(item.clip.path))
        self.labels.append(item.clip.label)
        score = self._flagged(rows)
        if score is None:
            return
        if len(self.frames) < MAX_THUMBNAIL_CLIPS:
            frames = self._thumbnails(item)
            if frames is not None:
                self.frames[str(item.clip.path)] = frames
        entry = (badness(True, score, item.index), str(item.clip.path), item.clip.label, item.tensor)
        if len(self.worst) < REPRO_CLIPS:
            heapq.heappush(self.worst, entry)
        elif entry[0] > self.worst[0][0]:
            heapq.heapreplace(self.worst, entry)

    def _aggregate(self, rows: np.ndarray) -> np.ndarray:
        """A clip's view rows ``[views, C]`` -> ``[C]``, as the helper's postprocess does."""
        return self.recipe.aggregate(rows) if self.recipe is not None else np.asarray(rows, np.float32).mean(axis=0)

    def _thumbnails(self, item: ClipInput) -> np.ndarray | None:
        """PP-TSM's frames; another helper's only for one input of a video layout (its first view), else none."""
        if self.recipe is None:
            return thumbnail_frames(item.tensor)
        arrays = arrays_of(item.tensor)
        if len(arrays) != 1 or tuple(self.recipe.layouts)[:1] not in (("ntchw",), ("ncthw",)):
            return None
        array = arrays[0][:1]
        return thumbnail_frames(array.transpose(0, 2, 1, 3, 4) if self.recipe.layouts[0] == "ncthw" else array)

    def repro(self) -> list[tuple]:
        """The worst clips kept, worst first: ``(badness, path, label, tensor)``."""
        return sorted(self.worst, key=lambda e: e[0], reverse=True)

    def _flagged(self, rows: dict[str, np.ndarray]) -> float | None:
        """None when the clip passes everywhere; else how far out it is (largest error over atol)."""
        worst = None
        for lane in self.selection.compared:
            if lane.name in rows and lane.against in rows:
                tol = self.cfg.tolerance_for(lane.name, lane.backend.precision, lane.backend.name)
                over = clip_verdict(rows[lane.against], rows[lane.name], tol)
                if over is not None:
                    worst = max(worst or 0.0, over)
        return worst

    def logits(self, records: list[BackendRecord]) -> dict[str, np.ndarray]:
        """``[clips, classes]`` per lane that ran to the end."""
        ok = {r.name for r in records if r.status == Status.OK}
        return {name: np.stack(rows) for name, rows in self.rows.items() if name in ok and len(rows) == len(self.paths)}

    def view_logits(self, records: list[BackendRecord]) -> dict[str, np.ndarray]:
        """``[clips, views, classes]`` per lane that ran to the end and gave several rows per clip."""
        ok = {r.name for r in records if r.status == Status.OK}
        return {name: np.stack(rows) for name, rows in self.view_rows.items() if name in ok and len(rows) == len(self.paths)}


def stream(plan) -> tuple[Collector, list[BackendRecord], DecodeStats, dict | None]:
    """Decode -> admit -> every lane, one bar over the clips; the engine's facts (a Ray cluster's) beside."""
    cfg, selection = plan.cfg, plan.selection
    engine = get_engine(cfg.engine, isolate=cfg.isolate, address=cfg.ray_address, timeout=cfg.backend_timeout, shared_paths=cfg.ray_shared_paths)
    collector, stats = Collector(selection, cfg, plan.golden, plan.recipe), DecodeStats()
    cache = TensorCache(cfg.tensor_cache) if cfg.tensor_cache else None
    if cache is not None:
        cache.check()
    if hasattr(engine, "plan_schedule"):  # how the backends share the cores, from measured costs (parity.schedule)
        engine.plan_schedule(plan)
    variants = tuple(lane.variant for lane in selection.attributions)
    recipe = {"recipe": plan.recipe} if plan.recipe is not None else {}  # another helper's preprocessing decodes instead
    items = engine.decode(plan.clips, plan.pre, plan.budget.workers, cache, stats, variants, cfg.decode_timeout, **recipe)
    admitted = (i for i in progress(items, desc="clips", unit="clip", total=len(plan.clips)) if collector.admit(i))
    records = engine.infer(selection.lanes, plan.art, admitted, collector.on_clip)
    return collector, records, stats, engine.facts() if hasattr(engine, "facts") else None


def thumbnail_frames(tensor: np.ndarray) -> np.ndarray:
    """Small uint8 frames ``[T, h, w, 3]`` of a normalized ``[1, T, 3, S, S]`` clip tensor."""
    pixels = np.clip((tensor[0] * STD + MEAN) * 255.0, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    step = max(1, pixels.shape[1] // 64)
    return np.ascontiguousarray(pixels[:, ::step, ::step])
