"""A short Markdown summary of a run, for a pull request or a CI job summary (``--summary-md FILE``).

It is what a reviewer acts on: the conclusion lines first (the same words as the terminal and the report's
header: what was gated, the verdict, why), one row per backend, and for a failing run each failing backend's
failed metrics against their tolerances and the worst clips with their numbers (max abs, top-1 of the
reference and of the backend, the reference's margin). Its report link points at the CI run's artifacts
when it runs in GitHub Actions or GitLab CI (a relative link does not resolve inside ``$GITHUB_STEP_SUMMARY``).

GitHub (``$GITHUB_STEP_SUMMARY``) and GitLab render it. Everything a user supplied (clip names,
backend names of their programs, error text) is made Markdown- and HTML-inert: HTML metacharacters
become entities and Markdown's punctuation is backslash-escaped, so a clip named
``<img src=x onerror=...>`` or ``**[click](javascript:...)**`` shows as text.
"""
from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path

from .baseline import summary_line
from .compare import Reason
from .conclusion import lines as conclusion_lines
from .errors import HarnessError

MAX_CLIPS = 20
WORST_CLIPS = 10
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def inert(text) -> str:
    """User text, safe inside Markdown (and the HTML it becomes): entities, then escaped punctuation, one line."""
    # Entities without "#" (a numeric one like &#x27; would be broken by escaping its "#" and show as text);
    # an apostrophe is inert in Markdown text and in the HTML it becomes.
    text = html.escape(" ".join(str(text).split()), quote=False).replace('"', "&quot;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def failed_metrics(comparison) -> list[dict]:
    """Each metric of ``comparison`` that the judge failed it on (by its reason codes): ``{metric, value, tolerance}``
    (the words the summary and the report show). A comparison that failed on something else (NaN outputs, a
    backend that crashed on clips) has its reasons as metrics without a number."""
    tol, c, out = comparison.tolerance, comparison, []
    codes = set(c.reason_codes)
    atol, rtol = tol.get("atol"), tol.get("rtol")
    if Reason.OUTSIDE_TOLERANCE in codes:
        if _finite(c.min_passing_atol) and _finite(atol) and c.min_passing_atol > atol:
            out.append({"metric": f"atol needed (with rtol {rtol:g})", "value": c.min_passing_atol, "tolerance": f"atol {atol:g}"})
        if _finite(c.cosine_min) and _finite(tol.get("min_cosine")) and c.cosine_min < tol["min_cosine"]:
            out.append({"metric": "cosine min", "value": c.cosine_min, "tolerance": f">= {tol['min_cosine']:g}"})
    if Reason.TOP1_AGREEMENT in codes:
        out.append({"metric": "top-1 agreement", "value": c.top1_agreement, "tolerance": f">= {tol['min_top1_agreement']:g}"})
    if Reason.CONFIDENT_FLIP in codes:
        confident = [cc for cc in c.clips if not cc.top1_agrees and _finite(cc.margin) and cc.margin > tol.get("confident_margin", 2.0)]
        out.append({"metric": "confident flips", "value": len(confident),
                    "tolerance": f"0 flips with reference margin over {tol.get('confident_margin', 2.0):g}"})
    if Reason.ACCURACY_DROP in codes:
        out.append({"metric": "accuracy drop", "value": -c.accuracy_delta, "tolerance": f"<= {tol['max_accuracy_drop']:g}"})
    if not c.passed and not out:  # NaN/Inf outputs, clips a program failed on: its reasons say it
        out += [{"metric": reason, "value": None, "tolerance": ""} for reason in c.reasons]
    return out


def worst_clips(result, k: int = WORST_CLIPS) -> list[dict]:
    """The ``k`` worst clips of the failing comparisons (failing first, then by max abs; a NaN is the worst):
    backend, path, max abs, top-1 of the reference and of the backend, the reference's margin, passed."""
    rows = [(c.backend, cc) for c in result.comparisons if not c.passed for cc in c.clips]

    def badness(row):
        cc = row[1]
        err = cc.max_abs if _finite(cc.max_abs) else math.inf
        return (cc.passed and cc.top1_agrees, cc.passed, -err)

    rows.sort(key=badness)
    return [{"backend": b, "path": cc.path, "max_abs": cc.max_abs, "top1_reference": cc.top1_reference,
             "top1_backend": cc.top1_backend, "margin": cc.margin, "passed": cc.passed, "top1_agrees": cc.top1_agrees}
            for b, cc in rows[:k]]


def report_link(report_html: Path, relative_to: Path | None = None, environ=None) -> tuple[str, str]:
    """(text, URL) of the report: the CI run's artifacts when the job runs in GitHub Actions
    (``GITHUB_SERVER_URL``/``GITHUB_REPOSITORY``/``GITHUB_RUN_ID``: the run's page, which lists its
    artifacts) or GitLab CI (``CI_JOB_URL``: the job's artifact browser); else the path relative to the summary."""
    env = os.environ if environ is None else environ
    target = Path(os.path.relpath(report_html, relative_to)) if relative_to else Path(report_html)
    text = target.as_posix()
    if all(env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
        url = f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return f"{text} in this run's artifacts", url
    if env.get("CI_JOB_URL"):
        return f"{text} in this job's artifacts", f"{env['CI_JOB_URL'].rstrip('/')}/artifacts/browse"
    return text, text


def _url(url: str) -> str:
    """A link destination Markdown cannot break out of, and never a script."""
    if re.match(r"^\s*(javascript|data|vbscript):", url, re.I):
        return "#"
    return re.sub(r"[\s()<>\\`]", lambda m: f"%{ord(m.group()):02X}", url)


def _common_folder(paths: list[str]) -> str:
    try:
        root = os.path.commonpath(paths) if paths else ""
    except ValueError:  # mixed absolute and relative paths
        return ""
    return root if root and root not in paths else os.path.dirname(root)


def _class(result, value) -> str:
    if value is None:
        return "–"
    name = (result.label_names or {}).get(value)
    return f"{value} ({name})" if name is not None else str(value)


def render(result, report_html: Path | None = None, relative_to: Path | None = None) -> str:
    verdict = result.verdict.upper()
    lines = [f"## PP-TSM parity: {'✅' if result.verdict == 'pass' else '❌'} **{verdict}**", ""]
    # the conclusion, in the words of the terminal and the report's header
    lines += [f"- {inert(line)}" for line in conclusion_lines(result)]
    lines += ["", f"Reference `{inert(result.reference)}`; {sum(c.status == 'ok' for c in result.clips)} of {len(result.clips)} clips compared."]
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
    failing = [c for c in result.comparisons if not c.passed]
    if failing:
        lines += ["", "**Failed metrics against their tolerances:**", "", "| backend | vs | metric | value | tolerance |", "|---|---|---|---|---|"]
        for c in failing:
            for m in failed_metrics(c):
                lines.append(f"| {inert(c.backend)} | {inert(c.reference)} | {inert(m['metric'])} | {_num(m['value'])} | {inert(m['tolerance'])} |")
        worst = worst_clips(result)
        if worst:
            root = _common_folder([w["path"] for w in worst])
            total = sum(len(c.failed_clips) for c in failing)
            lines += ["", f"**Worst clips** ({len(worst)} shown; {total} failing in all{f', under `{inert(root)}`' if root else ''}):", "",
                      "| backend | clip | max abs | top-1 reference → backend | reference margin | result |", "|---|---|---|---|---|---|"]
            for w in worst:
                shown = os.path.relpath(w["path"], root) if root else w["path"]
                result_text = "pass" if w["passed"] and w["top1_agrees"] else ("flip" if w["passed"] else "**FAIL**")
                lines.append(f"| {inert(w['backend'])} | {inert(shown)} | {_num(w['max_abs'])} | "
                             f"{inert(_class(result, w['top1_reference']))} → {inert(_class(result, w['top1_backend']))} | "
                             f"{_num(w['margin'])} | {result_text} |")
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
    trend = getattr(result, "baseline", None)
    if trend:
        lines += ["", summary_line(trend, inert)]
    if report_html is not None:
        text, url = report_link(Path(report_html), relative_to)
        lines += ["", f"Report: [{inert(text)}]({_url(url)})"]
    return "\n".join(lines) + "\n"


def write(result, path: str | Path, report_html: Path | None = None) -> Path:
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
