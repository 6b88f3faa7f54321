"""The hop matrix: every adjacent pair of the chain that ran, compared, and every pair's numbers.

It says where along the chain (dygraph -> static -> optimized Paddle -> ONNX -> lower precision)
the logits first moved; it explains a verdict and never changes it.
"""
from __future__ import annotations

import numpy as np

from ..backends import PRECISION_RANK, LaneKind, chain_position
from ..compare import compare_logits


def hop_matrix(records: list, logits: dict[str, np.ndarray], paths: list[str], labels: list, cfg) -> tuple[list[dict], dict | None, dict]:
    """Every adjacent pair of the chain that ran, compared, and the full pairwise matrix.

    The chain order is the registry's (dygraph -> static -> optimized Paddle -> ONNX -> lower precision
    and other runtimes); a hop is judged at the tolerances of its lower precision. Returns the hops,
    the first that failed (or None), and ``{backends, max_abs, top1_agreement}`` for every pair.
    """
    # main lanes in their backends' chain order (a user's programs and saved logits last): not batch checks, preprocessing
    # variants or golden outputs
    ran = sorted((r for r in records if r.status == "ok" and r.name in logits and r.kind == LaneKind.MAIN), key=lambda r: chain_position(r.name))
    # the matrix also holds the reference on other preprocessing: a program that preprocesses like the C++
    # deploy is then compared with the reference on that very preprocessing
    square = ran + [r for r in records if r.status == "ok" and r.name in logits and r.kind == LaneKind.VARIANT]
    hops = []
    for a, b in zip(ran, ran[1:]):
        precision = a.precision if PRECISION_RANK.get(a.precision, 0) < PRECISION_RANK.get(b.precision, 0) else b.precision
        c = compare_logits(b.name, a.name, precision, paths, labels, logits[a.name], logits[b.name], cfg.tolerance_for(b.name, precision))
        hops.append({"from": a.name, "to": b.name, "passed": c.passed, "max_abs": c.max_abs, "top1_agreement": c.top1_agreement,
                     "precision": precision, "reasons": c.reasons})
    names = [r.name for r in square]
    top1 = {n: np.argmax(logits[n], 1) for n in names}

    def worst(a: str, b: str) -> float:
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: not a number, left out below
            diff = np.abs(logits[a] - logits[b])
        finite = diff[np.isfinite(diff)]
        return float(finite.max()) if finite.size else float("nan")

    max_abs = [[worst(a, b) for b in names] for a in names]
    agreement = [[float(np.mean(top1[a] == top1[b])) if len(paths) else 1.0 for b in names] for a in names]
    return hops, next((h for h in hops if not h["passed"]), None), {"backends": names, "max_abs": max_abs, "top1_agreement": agreement}
