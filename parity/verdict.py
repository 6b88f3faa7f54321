"""The verdict: every lane compared with what it is compared against, and every reason the gate fails, decided once.

``parity run``, ``parity merge`` and the pytest plugin all show these failures; none re-derives them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .backends.registry import LaneKind
from .compare import Comparison, Reason, compare_logits, compare_views, elementwise
from .config import Tolerance
from .diagnose.hops import hop_matrix

__all__ = ["LOOSE_PROBE_SCALE", "Failure", "Judgement", "Reason", "judge"]


@dataclass(frozen=True)
class Failure:
    """One reason the gate fails, in the words every entry point shows (terminal, report, pytest, merge).

    ``backend`` names the lane it belongs to (None: the run as a whole); ``exit_code`` is 1 for a
    comparison that failed, 2 for what stopped the harness from judging (the reference did not run,
    a required backend is missing, golden clips changed).
    """

    text: str
    code: Reason
    backend: str | None = None
    exit_code: int = 1
    kind: str = "run"  # "comparison" (one of a comparison's reasons), "backend" (it crashed or is required) or "run"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Judgement:
    """Comparisons and the verdict, with what the user must be told (notes) and every reason it fails (failures)."""

    verdict: str  # "pass" | "fail"
    comparisons: list[Comparison]
    notes: list[str]
    failures: list[Failure]
    # The reference on other preprocessing paths: [{variant, reference, max_abs, mean_abs, top1_flips, clips}]
    preprocessing_attribution: list[dict] = field(default_factory=list)
    hops: list[dict] = field(default_factory=list)
    first_failing_hop: dict | None = None
    hop_matrix: dict = field(default_factory=dict)
    # Another helper's model with several output rows per clip (its views): every view row of every clip compared,
    # one ``NAME[views]`` comparison per compared lane (``comparisons`` compare the aggregated row per clip).
    view_comparisons: list[Comparison] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What stopped the harness from judging (exit 2)."""
        return [f.text for f in self.failures if f.exit_code == 2]


# A gate whose tolerances pass this perturbation of the reference cannot catch a defect of that size:
# every logit scaled by 1.05 (a conv weight x1.05 moves PP-TSM's logits about this much).
LOOSE_PROBE_SCALE = 1.05


def judge(selection, records: list, logits: dict[str, np.ndarray], paths: list[str], labels: list, cfg, changed: int = 0,
          lint: list[dict] | None = None, view_logits: dict[str, np.ndarray] | None = None) -> Judgement:
    """Compare every lane with what it is compared against, then decide: the only place a verdict is decided.

    The verdict passes only when every lane that ran matched, none crashed, the lint found nothing
    (with ``--lint error``), and nothing stopped the harness (the reference failed, a required backend
    did not run, golden clips changed). An unavailable backend is reported, never counted as passed.
    ``parity run``, ``parity merge`` and the pytest plugin all show these failures; none re-derives them.

    ``logits`` are one row per clip (a model with views: aggregated as the helper's postprocess does); ``view_logits``
    ``[clips, views, C]`` per lane that gave them: each compared lane's view rows are judged too (``view_comparisons``),
    under the same tolerance, and a view row that fails fails the gate.
    """
    by_name = {r.name: r for r in records}
    comparisons, notes, failures, per_view = [], list(selection.notes), [], []
    view_logits = view_logits or {}
    reference = by_name[selection.reference]
    if reference.status != "ok":
        failures.append(Failure(f"reference {selection.reference} did not run ({reference.reason}); nothing was compared",
                                Reason.REFERENCE_FAILED, None, 2))
    else:
        for lane in selection.compared:
            if by_name[lane.name].status == "ok" and by_name[lane.against].status == "ok":
                tol = cfg.tolerance_for(lane.name, lane.backend.precision, lane.backend.name)
                comparisons.append(compare_logits(lane.name, lane.against, lane.backend.precision, paths, labels, logits[lane.against],
                                                  logits[lane.name], tol, by_name[lane.name].clip_errors, lane.backend.name))
                notes += _loose_warnings(lane.name, logits[lane.against], tol)
                if lane.name in view_logits and lane.against in view_logits:
                    per_view.append(compare_views(lane.name, lane.against, lane.backend.precision, paths, labels,
                                                  view_logits[lane.against], view_logits[lane.name], tol, lane.backend.name))
        if view_logits and not per_view and comparisons:
            notes.append("the model gives several rows per clip (views), but only the aggregated rows were compared: "
                         "the reference's view rows are not here (golden outputs keep one row per clip)")
        if not comparisons:
            failures.append(Failure("no backend besides the reference ran; nothing was compared", Reason.NOTHING_COMPARED))
    for c in comparisons:
        failures += [Failure(f"{c.backend} vs {c.reference}: {reason}", code, c.backend, 1, "comparison")
                     for reason, code in zip(c.reasons, c.reason_codes)]
    for c in per_view:  # the lane's own failure: its views are its outputs
        lane = c.backend.removesuffix("[views]")
        failures += [Failure(f"{c.backend} vs {c.reference}[views]: {reason}", code, lane, 1, "comparison")
                     for reason, code in zip(c.reasons, c.reason_codes)]
    for r in records:
        notes += r.notes
        if r.status == "error" and r.kind != LaneKind.VARIANT:  # attribution lanes never fail the gate
            failures.append(Failure(f"{r.name} failed: {r.reason}", Reason.BACKEND_ERROR, r.name, 1, "backend"))
        elif r.status == "error":
            notes.append(f"{r.name} failed: {r.reason}")
        elif r.status == "unavailable" and r.name in cfg.require:
            failures.append(Failure(f"required backend {r.name} did not run ({r.reason})", Reason.REQUIRED_UNAVAILABLE, r.name, 2, "backend"))
        elif r.status == "unavailable":
            notes.append(f"{r.name} not compared: {r.reason}")
    attribution = []
    for lane in selection.attributions:
        if by_name[lane.name].status == "ok" and lane.against in logits and lane.name in logits:
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(logits[lane.name] - logits[lane.against])
            flips = int(np.sum(np.argmax(logits[lane.name], 1) != np.argmax(logits[lane.against], 1)))
            attribution.append({"variant": lane.variant, "reference": lane.against, "max_abs": _finite_max(diff),
                                "mean_abs": float(diff.mean()) if diff.size else 0.0, "top1_flips": flips, "clips": len(paths)})
    if changed:
        failures.append(Failure(f"{changed} clip(s) changed since the golden outputs were saved; they were not compared",
                                Reason.CLIP_CHANGED, None, 2))
    if lint:
        if cfg.lint == "error":
            rules = ", ".join(sorted({f.get("rule", "?") for f in lint}))
            failures.append(Failure(f"lint: {len(lint)} finding(s) in the ONNX model against the Paddle program ({rules}); "
                                    "--lint warn to only report them", Reason.LINT))
        else:
            notes.append(f"lint: {len(lint)} finding(s) in the ONNX model against the Paddle program (reported only: --lint {cfg.lint})")
    hops, first_failing_hop, matrix = hop_matrix(records, logits, paths, labels, cfg)
    return Judgement("fail" if failures else "pass", comparisons, notes, failures, attribution, hops, first_failing_hop, matrix, per_view)


def _finite_max(diff: np.ndarray) -> float:
    finite = diff[np.isfinite(diff)]
    return float(finite.max()) if finite.size else 0.0


def _loose_warnings(lane: str, ref_logits: np.ndarray, tol: Tolerance) -> list[str]:
    """A warning when ``tol`` would pass the reference scaled by LOOSE_PROBE_SCALE: that lane's logits are not gated."""
    rows = ref_logits[np.isfinite(ref_logits).all(1)]
    if not len(rows) or not np.abs(rows).max() > 0:
        return []
    if not elementwise(rows, rows * LOOSE_PROBE_SCALE, tol).within.all():
        return []
    return [f"warning: the tolerances of {lane} (atol {tol.atol:g}, rtol {tol.rtol:g}) pass the reference's own logits scaled "
            f"x{LOOSE_PROBE_SCALE}: its logits are not gated, only its classes"]
