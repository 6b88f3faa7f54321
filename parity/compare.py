"""Comparison of each backend's logits with the reference's, and the verdict.

Elementwise statistics and the atol/rtol rule come from Polygraphy's Comparator
(``CompareFunc.simple``); cosine, top-1/top-5 and accuracy are added per clip and per set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .config import Tolerance

OUTPUT = "logits"


@dataclass
class ClipComparison:
    path: str
    label: int | None
    passed: bool
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    top1_reference: int
    top1_backend: int
    top1_agrees: bool
    top5_overlap: float
    problems: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    backend: str
    reference: str
    precision: str
    passed: bool
    tolerance: dict
    clips_compared: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    cosine_min: float
    top1_agreement: float
    top5_overlap: float
    accuracy: float | None
    reference_accuracy: float | None
    accuracy_delta: float | None
    # The smallest atol that passes every clip with the configured rtol (Polygraphy's per-element rule).
    min_passing_atol: float
    failed_clips: list[str]
    reasons: list[str]
    clips: list[ClipComparison]

    def to_dict(self) -> dict:
        return asdict(self)


def _elementwise(reference: np.ndarray, backend: np.ndarray, tol: Tolerance) -> list:
    """Polygraphy's per-clip comparison: one OutputCompareResult per clip (row)."""
    from polygraphy.comparator import Comparator, IterationResult, RunResults, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    results = RunResults()
    for name, logits in (("reference", reference), ("backend", backend)):
        results.append((name, [IterationResult({OUTPUT: row[None]}, runner_name=name) for row in logits]))
    compare = SimpleCompareFunc(atol=tol.atol, rtol=tol.rtol, check_error_stat="elemwise", error_quantile=0.99)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    (result,) = accuracy  # one AccuracyResult per compare function
    (per_iteration,) = result.values()  # one runner pair
    return [iteration[OUTPUT] for iteration in per_iteration]


def compare_logits(
    backend: str,
    reference: str,
    precision: str,
    paths: list[str],
    labels: list[int | None],
    ref_logits: np.ndarray,
    logits: np.ndarray,
    tol: Tolerance,
) -> Comparison:
    """Compare ``logits`` ``[N, C]`` against ``ref_logits`` for the same N clips."""
    stats = _elementwise(ref_logits, logits, tol)
    clips = []
    for i, (path, label) in enumerate(zip(paths, labels)):
        r, b, s = ref_logits[i], logits[i], stats[i]
        cosine = float(np.dot(r, b) / max(np.linalg.norm(r) * np.linalg.norm(b), 1e-30))
        k = min(5, len(r))
        top5 = len(set(np.argsort(-r)[:k]) & set(np.argsort(-b)[:k])) / k
        clip = ClipComparison(
            path=path,
            label=label,
            passed=True,
            max_abs=s.max_absdiff,
            mean_abs=s.mean_absdiff,
            max_rel=s.max_reldiff,
            cosine=cosine,
            top1_reference=int(np.argmax(r)),
            top1_backend=int(np.argmax(b)),
            top1_agrees=bool(np.argmax(r) == np.argmax(b)),
            top5_overlap=top5,
        )
        if not bool(s):
            clip.problems.append(f"logits differ by up to {s.max_absdiff:.3g} (atol {tol.atol:g}, rtol {tol.rtol:g})")
        if cosine < tol.min_cosine:
            clip.problems.append(f"cosine {cosine:.6f} < {tol.min_cosine}")
        # A clip passes on its numbers; top-1 flips are judged over the set (min_top1_agreement).
        clip.passed = not clip.problems
        if not clip.top1_agrees:
            clip.problems.append(f"top-1 {clip.top1_backend} != reference {clip.top1_reference}")
        clips.append(clip)

    abs_err = np.abs(logits - ref_logits)
    agreement = float(np.mean([c.top1_agrees for c in clips]))
    labelled = [i for i, lab in enumerate(labels) if lab is not None]
    accuracy = ref_accuracy = delta = None
    if labelled:
        y = np.array([labels[i] for i in labelled])
        accuracy = float(np.mean(np.argmax(logits[labelled], 1) == y))
        ref_accuracy = float(np.mean(np.argmax(ref_logits[labelled], 1) == y))
        delta = accuracy - ref_accuracy

    reasons = []
    failed = [c.path for c in clips if not c.passed]
    if failed:
        reasons.append(f"{len(failed)} of {len(clips)} clips outside tolerance")
    if agreement < tol.min_top1_agreement:
        reasons.append(f"top-1 agreement {agreement:.3f} < {tol.min_top1_agreement}")
        failed += [c.path for c in clips if not c.top1_agrees and c.path not in failed]
    if delta is not None and -delta > tol.max_accuracy_drop + 1e-12:
        reasons.append(f"accuracy {accuracy:.3f} vs reference {ref_accuracy:.3f}: drop {-delta:.3f} > {tol.max_accuracy_drop}")
    # Polygraphy's rule: an element passes when |d| <= atol or |d| <= rtol*|ref|.
    need = np.where(abs_err <= tol.rtol * np.abs(ref_logits), 0.0, abs_err)
    return Comparison(
        backend=backend,
        reference=reference,
        precision=precision,
        passed=not reasons,
        tolerance=tol.to_dict(),
        clips_compared=len(clips),
        max_abs=float(abs_err.max()),
        mean_abs=float(abs_err.mean()),
        p99_abs=float(np.quantile(abs_err, 0.99)),
        max_rel=float(max(c.max_rel for c in clips)),
        cosine_min=float(min(c.cosine for c in clips)),
        top1_agreement=agreement,
        top5_overlap=float(np.mean([c.top5_overlap for c in clips])),
        accuracy=accuracy,
        reference_accuracy=ref_accuracy,
        accuracy_delta=delta,
        min_passing_atol=float(need.max()),
        failed_clips=failed,
        reasons=reasons,
        clips=clips,
    )


def clip_breaks(ref_row: np.ndarray, row: np.ndarray, tol: Tolerance) -> bool:
    """Whether one clip would fail or flip (the rule of ``compare_logits``, on one row, in numpy).

    Used while clips stream by, to keep thumbnails of the clips the report will show; the
    comparison itself is ``compare_logits``.
    """
    diff = np.abs(row - ref_row)
    if np.any((diff > tol.atol) & (diff > tol.rtol * np.abs(ref_row))):
        return True
    cosine = float(np.dot(ref_row, row) / max(np.linalg.norm(ref_row) * np.linalg.norm(row), 1e-30))
    return cosine < tol.min_cosine or int(np.argmax(ref_row)) != int(np.argmax(row))


@dataclass
class Judgement:
    """Comparisons and the verdict, with what the user must be told (notes) or what stops the gate (problems)."""

    verdict: str  # "pass" | "fail"
    comparisons: list[Comparison]
    notes: list[str]
    problems: list[str]


def judge(selection, records: list, logits: dict[str, np.ndarray], paths: list[str], labels: list, cfg, changed: int = 0) -> Judgement:
    """Compare every lane with what it is compared against, then decide.

    The verdict passes only when every lane that ran matched, none crashed, and nothing stopped
    the harness (the reference failed, a required backend did not run, golden clips changed).
    An unavailable backend is reported, never counted as passed.
    """
    by_name = {r.name: r for r in records}
    comparisons, notes, problems = [], list(selection.notes), []
    reference = by_name[selection.reference]
    if reference.status != "ok":
        problems.append(f"reference {selection.reference} did not run ({reference.reason}); nothing was compared")
    else:
        for lane in selection.compared:
            if by_name[lane.name].status == "ok" and by_name[lane.against].status == "ok":
                tol = cfg.tolerance_for(lane.name, lane.backend.precision, lane.backend.name)
                comparisons.append(
                    compare_logits(lane.name, lane.against, lane.backend.precision, paths, labels, logits[lane.against], logits[lane.name], tol)
                )
        if not comparisons:
            notes.append("no backend besides the reference ran; nothing was compared")
    for r in records:
        if r.status == "error":
            notes.append(f"{r.name} failed: {r.reason}")
        elif r.status == "unavailable" and r.name in cfg.require:
            problems.append(f"required backend {r.name} did not run ({r.reason})")
        elif r.status == "unavailable":
            notes.append(f"{r.name} not compared: {r.reason}")
    if changed:
        problems.append(f"{changed} clip(s) changed since the golden outputs were saved; they were not compared")
    errored = any(r.status == "error" for r in records)
    passed = bool(comparisons) and all(c.passed for c in comparisons) and not errored and not problems
    return Judgement("pass" if passed else "fail", comparisons, notes, problems)
