"""Comparison of each backend's logits with the reference's: the metrics and the one per-clip rule.

The atol/rtol rule is Polygraphy's (``CompareFunc.simple``, elementwise): Polygraphy judges the
whole set, and the same rule, vectorized, gives each clip its numbers. Cosine, top-1/top-5 and
accuracy are added per clip and per set. The verdict is ``parity.verdict.judge``'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from math import comb
from typing import NamedTuple

import numpy as np
from polygraphy.comparator import Comparator, IterationResult, RunResults, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from .config import Tolerance

OUTPUT = "logits"


class Reason(str, Enum):
    """Why the gate fails, as a code beside each failure's words: what the plugin, the summary and the conclusion choose by."""

    # a comparison's reasons (``Comparison.reason_codes``)
    CLIP_ERRORS = "clip_errors"  # the backend failed on some clips
    NONFINITE = "nonfinite"  # the backend's outputs contain NaN or Inf
    REFERENCE_NONFINITE = "reference_nonfinite"  # the reference's outputs contain NaN or Inf
    OUTSIDE_TOLERANCE = "outside_tolerance"  # clips outside atol/rtol or under min_cosine
    TOP1_AGREEMENT = "top1_agreement"  # top-1 agreement under min_top1_agreement
    CONFIDENT_FLIP = "confident_flip"  # a clip flipped whose reference margin was over confident_margin
    ACCURACY_DROP = "accuracy_drop"  # accuracy dropped more than max_accuracy_drop
    # the run's
    REFERENCE_FAILED = "reference_failed"  # the reference did not run (exit 2)
    NOTHING_COMPARED = "nothing_compared"  # no backend besides the reference ran
    BACKEND_ERROR = "backend_error"  # a backend crashed
    REQUIRED_UNAVAILABLE = "required_unavailable"  # a required backend did not run (exit 2)
    CLIP_CHANGED = "clip_changed"  # clips changed since the golden outputs were saved (exit 2)
    LINT = "lint"  # lint findings, with --lint error

    def __str__(self) -> str:
        return self.value


@dataclass
class ClipComparison:
    path: str
    label: int | None
    passed: bool
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    top1_reference: int | None  # None when that output is not finite
    top1_backend: int | None
    top1_agrees: bool
    top5_overlap: float
    problems: list[str] = field(default_factory=list)
    margin: float | None = None  # the reference's top-1 minus top-2 logit: how close the clip was to a tie
    reference_prob: float | None = None  # the reference's softmax probability of its top-1 class
    view: int | None = None  # in a per-view comparison: which of the clip's views (model output rows) this row is


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
    # How far inside (< 1) or outside (> 1) its atol the comparison was: min_passing_atol / atol.
    tolerance_margin: float
    # McNemar's exact test on labelled clips: is the accuracy difference more than chance? (None: unlabelled)
    mcnemar_p: float | None
    failed_clips: list[str]
    reasons: list[str]
    reason_codes: list[Reason]  # one per reason, in its order
    clips: list[ClipComparison]
    base_backend: str | None = None  # the backend its lane runs (``onnxruntime`` for ``onnxruntime@b4``)
    # A per-view comparison (``NAME[views]``): every view row of every clip compared, ``views`` rows per clip (its
    # ``clips`` are (clip, view) rows). None: one row per clip (the views aggregated as the helper's postprocess does).
    views: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _polygraphy_set(reference: np.ndarray, backend: np.ndarray, tol: Tolerance):
    """Polygraphy's elementwise comparison of the whole ``[N, C]`` set, as one iteration."""
    results = RunResults()
    for name, logits in (("reference", reference), ("backend", backend)):
        results.append((name, [IterationResult({OUTPUT: logits}, runner_name=name)]))
    compare = SimpleCompareFunc(atol=tol.atol, rtol=tol.rtol, check_error_stat="elemwise", error_quantile=0.99)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    (result,) = accuracy  # one AccuracyResult per compare function
    ((iteration,),) = result.values()  # one runner pair, one iteration
    return iteration[OUTPUT]


def _nonfinite_kind(row: np.ndarray) -> str:
    return " and ".join(k for k, bad in (("NaN", np.isnan(row).any()), ("Inf", np.isinf(row).any())) if bad)


class RowErrors(NamedTuple):
    max_abs: np.ndarray
    mean_abs: np.ndarray
    max_rel: np.ndarray
    within: np.ndarray  # every element within atol or rtol


def elementwise(reference: np.ndarray, backend: np.ndarray, tol: Tolerance) -> RowErrors:
    """Per row: max/mean absolute error, max relative error, and Polygraphy's elementwise verdict.

    The same rule as Polygraphy's ``CompareFunc.simple(check_error_stat="elemwise")``, vectorized
    over clips (Polygraphy per clip costs ~4 ms, minutes on a release set): relative error is
    taken against the second output with a 2e-16 epsilon on zeros, and an element fails when it
    is over both atol and rtol (NaN counts as over).
    """
    ref64, out64 = reference.astype(np.float64), backend.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, which fails, as in Polygraphy
        absdiff = np.abs(ref64 - out64)
    denominator = np.abs(np.where(out64 == 0, np.finfo(np.float64).eps, out64))
    with np.errstate(invalid="ignore"):
        reldiff = absdiff / denominator
    mismatch = ((absdiff > tol.atol) | np.isnan(absdiff)) & ((reldiff > tol.rtol) | np.isnan(reldiff))
    return RowErrors(absdiff.max(1), absdiff.mean(1), reldiff.max(1), ~mismatch.any(1))


def compare_logits(
    backend: str,
    reference: str,
    precision: str,
    paths: list[str],
    labels: list[int | None],
    ref_logits: np.ndarray,
    logits: np.ndarray,
    tol: Tolerance,
    clip_errors: dict[str, str] | None = None,
    base_backend: str | None = None,
) -> Comparison:
    """Compare ``logits`` ``[N, C]`` against ``ref_logits`` for the same N clips.

    ``clip_errors``: clips the backend failed on (a user's program that crashed on them): each is
    that clip's failure, with its message, and never a number or a class.
    """
    clip_errors = clip_errors or {}
    ref_finite, out_finite = np.isfinite(ref_logits).all(1), np.isfinite(logits).all(1)
    finite = ref_finite & out_finite  # NaN/Inf rows are failures of their own, never numbers or classes
    max_abs, mean_abs, max_rel, within = elementwise(ref_logits, logits, tol)
    if finite.any():
        whole_set = _polygraphy_set(ref_logits[finite], logits[finite], tol)
        if bool(whole_set) != bool(within[finite].all()):  # the vectorized rule must be Polygraphy's rule
            raise AssertionError(f"per-clip comparison disagrees with Polygraphy's ({bool(within[finite].all())} vs {bool(whole_set)})")
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(ref_logits, axis=1) * np.linalg.norm(logits, axis=1)
        cosines = np.einsum("ij,ij->i", ref_logits, logits) / np.maximum(norms, 1e-30)
    k = min(5, ref_logits.shape[1])
    top_ref, top_out = np.argsort(-ref_logits, axis=1)[:, :k], np.argsort(-logits, axis=1)[:, :k]
    margins, probs = _margins(ref_logits)
    clips = []
    for i, (path, label) in enumerate(zip(paths, labels)):
        clip = ClipComparison(
            path=path,
            label=label,
            passed=True,
            max_abs=float(max_abs[i]),
            mean_abs=float(mean_abs[i]),
            max_rel=float(max_rel[i]),
            cosine=float(cosines[i]),
            top1_reference=int(top_ref[i, 0]) if ref_finite[i] else None,
            top1_backend=int(top_out[i, 0]) if out_finite[i] else None,
            top1_agrees=bool(finite[i] and top_ref[i, 0] == top_out[i, 0]),
            top5_overlap=len(set(top_ref[i]) & set(top_out[i])) / k if finite[i] else 0.0,
            margin=float(margins[i]),
            reference_prob=float(probs[i]),
        )
        if path in clip_errors:
            clip.problems.append(clip_errors[path])
        elif not out_finite[i]:
            clip.problems.append(f"output contains {_nonfinite_kind(logits[i])}")
        if not ref_finite[i]:
            clip.problems.append(f"reference output contains {_nonfinite_kind(ref_logits[i])}")
        if finite[i] and not within[i]:
            clip.problems.append(f"logits differ by up to {clip.max_abs:.3g} (atol {tol.atol:g}, rtol {tol.rtol:g})")
        if finite[i] and clip.cosine < tol.min_cosine:
            clip.problems.append(f"cosine {clip.cosine:.6f} < {tol.min_cosine}")
        # A clip passes on its numbers; top-1 flips are judged over the set (min_top1_agreement).
        clip.passed = not clip.problems
        if finite[i] and not clip.top1_agrees:
            clip.problems.append(f"top-1 {clip.top1_backend} != reference {clip.top1_reference} "
                                 f"(reference margin {clip.margin:.3g}, p={clip.reference_prob:.3f})")
        clips.append(clip)

    abs_err = np.abs(logits[finite] - ref_logits[finite])
    agreement = float(np.mean([c.top1_agrees for c in clips]))
    labelled = [i for i, lab in enumerate(labels) if lab is not None and finite[i]]
    accuracy = ref_accuracy = delta = None
    if labelled:
        y = np.array([labels[i] for i in labelled])
        accuracy = float(np.mean(np.argmax(logits[labelled], 1) == y))
        ref_accuracy = float(np.mean(np.argmax(ref_logits[labelled], 1) == y))
        delta = accuracy - ref_accuracy

    reasons, codes = [], []
    errored = np.array([p in clip_errors for p in paths], dtype=bool)
    if errored.any():
        first = clip_errors[paths[int(np.argmax(errored))]]
        reasons.append(f"the backend failed on {int(errored.sum())} clip{'s' if errored.sum() > 1 else ''} (first: {first})")
        codes.append(Reason.CLIP_ERRORS)
    for who, rows in ((None, logits), ("reference", ref_logits)):
        for kind, bad in (("NaN", np.isnan(rows).any(1) & (~errored if who is None else True)), ("Inf", np.isinf(rows).any(1))):
            if bad.any():
                reasons.append(f"{who + ' ' if who else ''}outputs contain {kind} in {int(bad.sum())} clip{'s' if bad.sum() > 1 else ''}")
                codes.append(Reason.REFERENCE_NONFINITE if who else Reason.NONFINITE)
    failed = [c.path for c in clips if not c.passed]
    numeric = sum(1 for c, f in zip(clips, finite) if f and not c.passed)
    if numeric:
        reasons.append(f"{numeric} of {len(clips)} clips outside tolerance")
        codes.append(Reason.OUTSIDE_TOLERANCE)
    if agreement < tol.min_top1_agreement:
        reasons.append(f"top-1 agreement {agreement:.3f} < {tol.min_top1_agreement}")
        codes.append(Reason.TOP1_AGREEMENT)
        failed += [c.path for c in clips if not c.top1_agrees and c.path not in failed]
    confident = [c for c, f in zip(clips, finite) if f and not c.top1_agrees and c.margin is not None and c.margin > tol.confident_margin]
    if confident:
        reasons.append(f"{len(confident)} confident clip(s) flipped (reference margin over {tol.confident_margin:g})")
        codes.append(Reason.CONFIDENT_FLIP)
        failed += [c.path for c in confident if c.path not in failed]
    if delta is not None and -delta > tol.max_accuracy_drop + 1e-12:
        reasons.append(f"accuracy {accuracy:.3f} vs reference {ref_accuracy:.3f}: drop {-delta:.3f} > {tol.max_accuracy_drop}")
        codes.append(Reason.ACCURACY_DROP)
    # Polygraphy's rule: an element passes when |d| <= atol or |d| <= rtol*|backend value|.
    need = np.where(abs_err <= tol.rtol * np.abs(logits[finite]), 0.0, abs_err)
    nan = float("nan")
    return Comparison(
        backend=backend,
        reference=reference,
        precision=precision,
        passed=not reasons,
        tolerance=tol.to_dict(),
        clips_compared=len(clips),
        max_abs=float(abs_err.max()) if abs_err.size else nan,
        mean_abs=float(abs_err.mean()) if abs_err.size else nan,
        p99_abs=float(np.quantile(abs_err, 0.99)) if abs_err.size else nan,
        max_rel=float(max(max_rel[finite])) if finite.any() else nan,
        cosine_min=float(min(cosines[finite])) if finite.any() else nan,
        top1_agreement=agreement,
        top5_overlap=float(np.mean([c.top5_overlap for c in clips])),
        accuracy=accuracy,
        reference_accuracy=ref_accuracy,
        accuracy_delta=delta,
        min_passing_atol=float(need.max()) if need.size else nan,
        tolerance_margin=float(need.max()) / tol.atol if need.size and tol.atol > 0 else nan,
        mcnemar_p=mcnemar_p(ref_logits[labelled], logits[labelled], [labels[i] for i in labelled]) if labelled else None,
        failed_clips=failed,
        reasons=reasons,
        reason_codes=codes,
        clips=clips,
        base_backend=base_backend or backend,
    )


def compare_views(lane: str, reference: str, precision: str, paths: list[str], labels: list[int | None], ref_rows: np.ndarray,
                  rows: np.ndarray, tol: Tolerance, base_backend: str | None = None) -> Comparison:
    """Every view row of every clip: ``rows`` and ``ref_rows`` ``[clips, views, C]``, compared row by row under the same
    rule and tolerance as the aggregated rows; named ``LANE[views]``, each clip row carrying its ``view``."""
    clips, views = rows.shape[:2]
    comp = compare_logits(f"{lane}[views]", reference, precision, [p for p in paths for _ in range(views)],
                          [label for label in labels for _ in range(views)], ref_rows.reshape(clips * views, -1),
                          rows.reshape(clips * views, -1), tol, None, base_backend or lane)
    for i, clip in enumerate(comp.clips):
        clip.view = i % views
    comp.views = views
    return comp


def _margins(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: top-1 minus top-2 logit, and the top-1 softmax probability (NaN for non-finite rows)."""
    with np.errstate(invalid="ignore", over="ignore"):
        top2 = -np.sort(-logits, axis=1)[:, :2] if logits.shape[1] > 1 else np.concatenate([logits, logits], 1)
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        probs = shifted.max(1) / shifted.sum(1)
    return top2[:, 0] - top2[:, 1], probs


def mcnemar_p(ref_logits: np.ndarray, logits: np.ndarray, labels: list[int]) -> float:
    """McNemar's exact test (two-sided) on the clips one of the two gets right and the other wrong."""
    y = np.asarray(labels)
    ref_ok, ok = np.argmax(ref_logits, 1) == y, np.argmax(logits, 1) == y
    b, c = int(np.sum(ref_ok & ~ok)), int(np.sum(~ref_ok & ok))
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def clip_verdict(ref_row: np.ndarray, row: np.ndarray, tol: Tolerance) -> float | None:
    """The per-clip rule on one row: None when the clip holds, else how far out it is (its largest error over
    atol; inf for NaN/Inf). A clip breaks when it would fail or flip in ``compare_logits``.

    Used while clips stream by, to keep thumbnails and the repro bundle's worst clips; the comparison
    itself is ``compare_logits``.
    """
    if not (np.isfinite(row).all() and np.isfinite(ref_row).all()):
        return float("inf")
    errors = elementwise(ref_row[None], row[None], tol)
    cosine = float(np.dot(ref_row, row) / max(np.linalg.norm(ref_row) * np.linalg.norm(row), 1e-30))
    if errors.within[0] and cosine >= tol.min_cosine and int(np.argmax(ref_row)) == int(np.argmax(row)):
        return None
    return _over(float(errors.max_abs[0]), tol.atol)


def _over(max_abs: float, atol: float) -> float:
    return max_abs / max(atol, 1e-12) if np.isfinite(max_abs) else float("inf")


def badness(breaks: bool, over: float, index: int) -> tuple:
    """The one ranking of clips, larger is worse: breaking clips first, then by error over atol, then the earlier clip.

    What the repro bundle keeps, ``--localize``/``--advise`` and ``parity localize`` all pick by it."""
    return (breaks, over, -index)


def worst_rows(ref_logits: np.ndarray, logits: np.ndarray, tol: Tolerance, k: int | None = None) -> list[int]:
    """The indices of the ``k`` worst rows (all when None), worst first, by ``badness`` of ``clip_verdict``: for a
    caller that has logits rows and no comparison (``parity localize``)."""
    def key(i: int) -> tuple:
        over = clip_verdict(ref_logits[i], logits[i], tol)
        if over is None:
            over = _over(float(elementwise(ref_logits[i:i + 1], logits[i:i + 1], tol).max_abs[0]), tol.atol)
            return badness(False, over, i)
        return badness(True, over, i)

    return sorted(range(len(logits)), key=key, reverse=True)[:k]


def worst_clips(comparison: Comparison, k: int | None = None) -> list[ClipComparison]:
    """The ``k`` worst clips of ``comparison`` (all when None), worst first, by ``badness``."""
    atol = comparison.tolerance["atol"]
    ranked = sorted(range(len(comparison.clips)), reverse=True,
                    key=lambda i: badness(bool(comparison.clips[i].problems), _over(comparison.clips[i].max_abs, atol), i))
    return [comparison.clips[i] for i in ranked[:k]]
