"""What a run produced: clip and backend records, comparisons, verdict. Serialized to results.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np

from .artifacts.cache import sha256_file
from .backends.registry import LaneKind, Status
from .compare import Comparison
from .errors import HarnessError
from .verdict import Failure

SCHEMA_VERSION = 3


def verify_report_files(folder, data: dict) -> None:
    """The arrays of a report folder are the ones its results.json pinned (``files_sha256``); else a one-line HarnessError."""
    pinned = data.get("files_sha256")
    if not isinstance(pinned, dict) or "logits.npz" not in pinned:
        raise HarnessError(f"{folder}: its results.json does not pin logits.npz by sha256 (written by an older version); run it again")
    for name, expected in pinned.items():
        path = Path(folder) / name
        if not path.is_file() or sha256_file(path) != expected:
            raise HarnessError(f"{path}: not the file its results.json pinned (sha256 {str(expected)[:16]}); the report was changed after it was written")


def _plain(value):
    """A field's value for JSON: records by their own ``to_dict`` (else every field), lists item by item."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


@dataclass
class ClipRecord:
    path: str
    label: int | None
    status: Status  # ok | error
    error: str | None = None
    sha256: str | None = None
    index: int = 0  # position in the full clip list (shards keep it)
    views: int | None = None  # the model's output rows for this clip (its views), when more than one; None: one row


@dataclass
class BackendRecord:
    name: str
    precision: str
    description: str
    status: Status
    reason: str | None = None
    latency_ms: list[float] = field(default_factory=list)
    batch: int = 1
    kind: LaneKind = LaneKind.MAIN  # what its lane is for: judged (main), a batch check, a preprocessing variant, golden outputs
    pid: int | None = field(default=None, repr=False)  # the process the runner ran in (another one when isolated): not a result
    clip_errors: dict[str, str] = field(default_factory=dict)  # clips this backend failed on (a user's program), with why
    notes: list[str] = field(default_factory=list)  # what the user should know about this backend's run
    # The distinct input shapes this lane's runner was given, in first-seen order (what was really fed,
    # e.g. [[4, 8, 3, 224, 224], [2, 8, 3, 224, 224]] for batches of 4 and a remainder of 2). Empty for
    # a lane that takes clips rather than tensors (a user's program, saved logits).
    batch_shapes: list[list[int]] = field(default_factory=list)
    # What a GPU backend proves about what ran (its engine's key and layer precisions, TensorRT's share of the
    # nodes, the engine files of this key), from its runner's ``evidence()``; None for backends without any.
    evidence: dict | None = None

    def keep_evidence(self, runner) -> None:
        """Take the runner's evidence, if it has any (never the backend's failure)."""
        try:
            found = runner.evidence() if hasattr(runner, "evidence") else None
        except Exception as exc:
            found = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        if found is not None:
            self.evidence = found

    def fed(self, shape) -> None:
        """Record one input shape given to the runner (kept once, in first-seen order)."""
        shape = [int(d) for d in shape]
        if shape not in self.batch_shapes:
            self.batch_shapes.append(shape)

    def to_dict(self) -> dict:
        """Its fields but the pid (tests check isolation with it; it is not a result), and its latency summary."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.repr} | self.latency_summary()

    def latency_summary(self) -> dict:
        if not self.latency_ms:
            return {}
        ms = np.asarray(self.latency_ms)
        return {
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()),
            "clips_per_s": float(1000.0 / ms.mean()) if ms.mean() > 0 else None,
        }


@dataclass
class RunResult:
    verdict: str  # "pass" | "fail"
    reference: str
    backends: list[BackendRecord]
    comparisons: list[Comparison]
    clips: list[ClipRecord]
    artifacts: dict
    tolerances: dict
    preprocess: dict
    environment: dict
    notes: list[str] = field(default_factory=list)
    # Why the harness could not do what was asked (reference failed, a required backend
    # did not run): the run exits 2.
    problems: list[str] = field(default_factory=list)
    # Every reason the verdict fails, from ``verdict.judge`` (the one judge): what the terminal, the
    # report, ``parity merge`` and the pytest items show.
    failures: list[Failure] = field(default_factory=list)
    training: dict | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    logits: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # Sampled frames of clips that failed or flipped, for the report's thumbnails.
    frames: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # How the run ran: engine, thread budget, batch, shard, decode counts, tensor cache.
    run: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    lint: list[dict] | None = None  # findings of `parity lint` on the models (None: not linted)
    diagnosis: list[dict] = field(default_factory=list)  # `--localize`: where each failing pair diverged
    hops: list[dict] = field(default_factory=list)  # adjacent pairs of the deployment chain, in chain order
    first_failing_hop: dict | None = None
    hop_matrix: dict = field(default_factory=dict)  # {backends, max_abs, top1_agreement} for every pair
    preprocessing_attribution: list[dict] = field(default_factory=list)  # `--preprocess paddlevideo,cpp`
    int8: dict | None = None  # how the INT8 model was made, and its per-layer SQNR (worst first)
    advice: list[dict] = field(default_factory=list)  # `--advise`: nodes to keep in FP32, with the numbers before and after
    per_class: dict | None = None  # with labels: each backend's per-class accuracy against the reference's, and flip pairs
    baseline: dict | None = None  # `--baseline`: this release's numbers beside the previous release's
    # The worst failing clips' input tensors (path, label, [1, T, 3, S, S]): the report's repro bundle.
    repro_inputs: list[tuple] = field(default_factory=list, repr=False)
    # A model with several output rows per clip (views): every view row of every clip compared, per lane (``NAME[views]``);
    # ``comparisons`` hold the aggregated row per clip. ``view_logits``: [clips, views, C] per lane (logits.npz ``NAME[views]``).
    view_comparisons: list[Comparison] = field(default_factory=list)
    view_logits: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """results.json: every field but the arrays (``repr=False``: logits, frames, view logits and repro tensors go
        to logits.npz and frames.npz), so a field added here is written without a second list to keep."""
        return {"schema_version": SCHEMA_VERSION} | {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.repr}
