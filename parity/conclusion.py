"""The conclusion of a run, first and in the same words everywhere: the terminal, the report's header and the
Markdown summary all print these lines.

1. what was gated: the model, its short hashes, the runtime versions, the clip count;
2. the verdict;
3. for a failure, one line per failing backend with the strongest explanation the run has: a lint finding, the
   node where it diverged (with its Paddle op), a drift that preprocessing explains, the first failing hop, or the
   metric that failed.
"""
from __future__ import annotations

from pathlib import Path

from .compare import Reason, elementwise
from .config import Tolerance

# Versions that decide the numbers of a PP-TSM deployment, shown in the identity line when present.
_VERSIONS = (("paddlepaddle", "paddle"), ("paddlepaddle-gpu", "paddle-gpu"), ("paddle2onnx", "paddle2onnx"),
             ("onnxruntime", "onnxruntime"), ("onnxruntime-gpu", "onnxruntime-gpu"), ("tensorrt", "tensorrt"), ("openvino", "openvino"))


def identity(result) -> str:
    """``model NAME (paddle 1a2b3c4d, onnx 5e6f7a8b) · paddle 3.3.1, onnxruntime 1.20 · 24 clips``."""
    art = result.artifacts or {}
    files = [art.get(k) for k in ("paddle_model", "onnx", "trt_engine") if art.get(k)]
    name = Path(files[0]).stem if files else (result.reference or "model")
    hashes = [f"{label} {art[key][:8]}" for label, key in (("paddle", "paddle_params_sha256"), ("onnx", "onnx_sha256"),
                                                            ("engine", "trt_engine_sha256"), ("golden", "golden_npz_sha256"))
              if isinstance(art.get(key), str)]
    env = result.environment or {}
    versions = [f"{label} {env[dist]}" for dist, label in _VERSIONS if env.get(dist)]
    compared = sum(c.status == "ok" for c in result.clips)
    clips = f"{compared} clips" + (f" ({len(result.clips) - compared} unreadable)" if compared < len(result.clips) else "")
    model = f"model {name}" + (f" ({', '.join(hashes)})" if hashes else "")
    return " · ".join(part for part in (model, ", ".join(versions), clips) if part)


def _diagnosis(result, backend: str) -> str | None:
    for d in result.diagnosis or []:
        node = d.get("first_divergence")
        if d.get("backend") == backend and node:
            return (f"diverges first at ONNX node {node['onnx_node']} ({node['onnx_op']}) = Paddle {node['paddle_op']} "
                    f"(error {node['error_in']:.3g} at its inputs, {node['error_out']:.3g} at its output)")
    return None


def _preprocessing(result, comparison) -> str | None:
    """A backend that fails against the reference but passes, by the comparison's own per-clip rule and tolerance,
    against the reference on another preprocessing path over the same frames: the drift is preprocessing."""
    logits = result.logits or {}
    if comparison.backend not in logits:
        return None
    tol = Tolerance(**comparison.tolerance)
    for a in result.preprocessing_attribution or []:
        lane = f"{a['reference']}[{a['variant']}]"
        if lane not in logits or len(logits[lane]) != len(logits[comparison.backend]):
            continue
        max_abs, _, _, within = elementwise(logits[lane], logits[comparison.backend], tol)
        if within.all():
            return (f"explained by preprocessing: {comparison.backend} agrees with {lane} to {float(max_abs.max()):.2g} "
                    f"(within atol {tol.atol:g}/rtol {tol.rtol:g}); the {a['variant']} path alone moves {a['reference']} by {a['max_abs']:.3g}")
    return None


def lines(result) -> list[str]:
    """The conclusion: identity, verdict, and why (one line per failing backend, then run-level reasons)."""
    skipped = [b.name for b in result.backends if b.status == "unavailable"]
    extra = f"; {len(skipped)} backend(s) unavailable, not compared: {', '.join(skipped)}" if skipped else ""
    out = [f"gated: {identity(result)}", f"verdict: {result.verdict.upper()} (reference {result.reference}{extra})"]
    if result.verdict == "pass" and not result.problems:
        return out
    lint = [f for f in result.failures if f.code == Reason.LINT]
    for finding in (result.lint or [])[:3] if lint else []:
        node = f" at {finding.get('onnx_node')}" if finding.get("onnx_node") else ""
        paddle = f" (Paddle {finding['paddle_op']})" if finding.get("paddle_op") else ""
        out.append(f"why: lint finding {finding.get('rule')}{node}{paddle}: {finding.get('message', '')}")
    hop = result.first_failing_hop
    for c in result.comparisons:
        if c.passed:
            continue
        why = _diagnosis(result, c.backend) or _preprocessing(result, c)
        if why is None and hop and hop["to"] == c.backend and hop["from"] != c.reference:
            why = f"first failing hop {hop['from']} -> {hop['to']} (max abs {hop['max_abs']:.3g})"
        out.append(f"why: {c.backend}: {why or '; '.join(c.reasons)}")
    compared = {c.backend for c in result.comparisons}
    out += [f"why: {f.text}" for f in result.failures if f.kind != "comparison" and f not in lint and f.backend not in compared]
    return out
