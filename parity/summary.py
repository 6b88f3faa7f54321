"""A short Markdown summary of a run, for a pull request or a CI job summary (``--summary-md FILE``).

GitHub (``$GITHUB_STEP_SUMMARY``) and GitLab render it. Everything a user supplied (clip names,
backend names of their programs, error text) is made Markdown- and HTML-inert: HTML metacharacters
become entities and Markdown's punctuation is backslash-escaped, so a clip named
``<img src=x onerror=...>`` or ``**[click](javascript:...)**`` shows as text.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

MAX_CLIPS = 20
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def inert(text) -> str:
    """User text, safe inside Markdown (and the HTML it becomes): entities, then escaped punctuation, one line."""
    text = html.escape(" ".join(str(text).split()), quote=True)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render(result, report_html: Path | None = None, relative_to: Path | None = None) -> str:
    verdict = result.verdict.upper()
    lines = [f"## PP-TSM parity: {'✅' if result.verdict == 'pass' else '❌'} **{verdict}**", ""]
    lines.append(f"Reference `{inert(result.reference)}`; {sum(c.status == 'ok' for c in result.clips)} of {len(result.clips)} clips compared.")
    if result.failures:  # the judge's reasons, in its words
        lines += ["", "**Why:**", ""] + [f"- {inert(f.text)}" for f in result.failures]
    lines += ["", "| backend | status | max abs | top-1 agreement | accuracy Δ | latency p50 (ms) |", "|---|---|---|---|---|---|"]
    by_backend = {c.backend: c for c in result.comparisons}
    for b in result.backends:
        c = by_backend.get(b.name)
        status = ("pass" if c.passed else "**FAIL**") if c else (b.status if b.status != "ok" else "reference")
        p50 = b.latency_summary().get("p50_ms")
        lines.append(f"| {inert(b.name)} | {status} | {_num(c.max_abs) if c else '–'} | {_num(c.top1_agreement) if c else '–'} | "
                     f"{_num(c.accuracy_delta) if c else '–'} | {_num(p50, 4) if p50 else '–'} |")
    failing = [(c.backend, path) for c in result.comparisons for path in c.failed_clips]
    if failing:
        lines += ["", f"**Failing clips** ({len(failing)}):", ""]
        lines += [f"- {inert(backend)}: {inert(path)}" for backend, path in failing[:MAX_CLIPS]]
        if len(failing) > MAX_CLIPS:
            lines.append(f"- … and {len(failing) - MAX_CLIPS} more (see the report)")
    errors = [c for c in result.clips if c.status != "ok"]
    if errors:
        lines += ["", f"**Unreadable clips** ({len(errors)}):", ""] + [f"- {inert(c.error)}" for c in errors[:MAX_CLIPS]]
    if result.first_failing_hop:
        h = result.first_failing_hop
        lines += ["", f"**First failing hop:** {inert(h['from'])} → {inert(h['to'])} (max abs {_num(h['max_abs'])}, "
                      f"top-1 agreement {_num(h['top1_agreement'])})"]
    for d in result.diagnosis:
        if d.get("first_divergence"):
            f = d["first_divergence"]
            lines += ["", f"**First divergent node** ({inert(d['backend'])}): {inert(f['onnx_node'])} ({inert(f['onnx_op'])}) = Paddle "
                          f"{inert(f['paddle_op'])}"]
    if report_html is not None:
        target = Path(os.path.relpath(report_html, relative_to)) if relative_to else Path(report_html)
        lines += ["", f"Report: [{inert(target.as_posix())}]({target.as_posix().replace(' ', '%20').replace('(', '%28').replace(')', '%29')})"]
    return "\n".join(lines) + "\n"


def write(result, path: str | Path, report_html: Path | None = None) -> Path:
    from .errors import HarnessError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        append = bool(step_summary) and Path(step_summary).resolve() == path.resolve()  # GitHub's file collects every step's
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.write(render(result, report_html, path.parent.resolve()))
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write the summary: {exc.strerror or exc}") from None
    return path
