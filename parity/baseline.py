"""Release over release: this run against the previous release's saved report (or its golden outputs).

A gate on model releases compares this release with the last one. For each backend: its max abs difference from
the reference, its tolerance margin (atol needed / atol: under 1 is inside), its top-1 agreement, its accuracy and
its per-class accuracy, the previous release's beside this one's, with the change. From a golden folder only the
reference's logits are known: then the reference's own drift between the releases and its per-class accuracy.

A margin that grew past ``MARGIN_GROWTH`` times the previous one is a **warning, not a failure** (the verdict is
the gate's alone): the release still passes, but the conversion moved towards its tolerance and should be looked
at. Margins under ``MARGIN_FLOOR`` (5% of the tolerance) are noise and never warn, however much they grew (a
clean FP32 conversion's margin is often exactly 0).

``compare(result, previous)`` returns plain JSON (for a ``baseline`` field of results.json); the report's trend
section and the summary's line render it. ``compare_releases(folders)`` is ``parity compare-releases A B ...``:
a text table of saved reports, oldest first.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .classes import per_class
from .errors import HarnessError

MARGIN_GROWTH = 2.0  # a tolerance margin more than twice the previous release's is a warning
MARGIN_FLOOR = 0.05  # ... once it uses at least 5% of the tolerance
METRICS = ("max_abs", "tolerance_margin", "top1_agreement", "accuracy")
_LABELS = {"max_abs": "max abs", "tolerance_margin": "tolerance margin", "top1_agreement": "top-1 agreement", "accuracy": "accuracy"}
_HASHES = (("paddle", "paddle_params_sha256"), ("onnx", "onnx_sha256"), ("engine", "trt_engine_sha256"))


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def load(previous: str | Path) -> SimpleNamespace:
    """A saved release: a report folder (results.json, and logits.npz when it has one) or a golden folder
    (golden.json + golden.npz). Returns what compare() needs, in the shape of a RunResult where it can."""
    folder = Path(previous)
    try:
        if (folder / "results.json").is_file():
            data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            logits = {}
            if (folder / "logits.npz").is_file():
                with np.load(folder / "logits.npz", allow_pickle=False) as npz:
                    logits = {k: npz[k] for k in npz.files}
            clips = [SimpleNamespace(path=c["path"], label=c.get("label"), status=c.get("status", "ok"), sha256=c.get("sha256"))
                     for c in data.get("clips", [])]
            comparisons = data.get("comparisons", [])
            return SimpleNamespace(kind="report", folder=folder, data=data, reference=data.get("reference"), verdict=data.get("verdict"),
                                   artifacts=data.get("artifacts") or {}, clips=clips, logits=logits, label_names=data.get("label_names") or {},
                                   comparisons=[SimpleNamespace(**{k: c.get(k) for k in ("backend", "reference", "precision", *METRICS)})
                                                for c in comparisons],
                                   per_class=data.get("per_class"))
        if (folder / "golden.json").is_file() and (folder / "golden.npz").is_file():
            meta = json.loads((folder / "golden.json").read_text(encoding="utf-8"))
            with np.load(folder / "golden.npz", allow_pickle=False) as npz:
                rows, paths = npz["logits"], [str(p) for p in npz["clips"]]
            clips = [SimpleNamespace(path=p, label=c.get("label"), status="ok", sha256=c.get("sha256")) for p, c in zip(paths, meta["clips"])]
            return SimpleNamespace(kind="golden", folder=folder, data=meta, reference=meta["reference"], verdict=None,
                                   artifacts=meta.get("artifacts") or {}, clips=clips,
                                   logits={"clips": np.array(paths), meta["reference"]: rows}, label_names={}, comparisons=[], per_class=None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{folder}: cannot read the previous release: {exc}") from None
    raise HarnessError(f"{folder}: not a report folder (results.json, logits.npz) nor a golden folder (golden.json, golden.npz)")


def model(release) -> str:
    """``pptsm_v2 (paddle 0cd2bf35, onnx efb5f3f9)``: the model of a release, by its short hashes."""
    art = release.artifacts or {}
    files = [art.get(k) for k in ("paddle_model", "onnx", "trt_engine") if isinstance(art.get(k), str)]
    name = Path(files[0]).stem if files else "model"
    hashes = [f"{label} {art[key][:8]}" for label, key in _HASHES if isinstance(art.get(key), str)]
    return name + (f" ({', '.join(hashes)})" if hashes else "")


def _per_class(release) -> dict | None:
    if getattr(release, "per_class", None):
        return release.per_class
    return per_class(release) if release.logits else None


def _class_changes(now: dict | None, before: dict | None, backend: str) -> list[dict]:
    """Per class of both releases: the backend's accuracy before and now, for the classes where it moved."""
    if not now or not before:
        return []

    def table(data):
        entry = next((b for b in data["backends"] if b["backend"] == backend), None)
        if entry is None and backend == data["reference"]:
            return dict(zip(data["classes"], data["reference_accuracy"]))
        return dict(zip(data["classes"], entry["accuracy"])) if entry else {}

    a, b = table(before), table(now)
    out = []
    for cls in sorted(set(a) & set(b)):
        if a[cls] is not None and b[cls] is not None and abs(b[cls] - a[cls]) > 1e-12:
            out.append({"class": cls, "previous": a[cls], "current": b[cls], "change": b[cls] - a[cls]})
    return sorted(out, key=lambda row: row["change"])


def _reference_drift(result, before) -> dict | None:
    """The reference's logits of this release against the previous release's, on the clips both have (matched by
    sha256, then by file name): how much the model itself moved."""
    ref_now, ref_before = result.logits.get(result.reference), before.logits.get(before.reference)
    if ref_now is None or ref_before is None:
        return None
    now_paths = [str(p) for p in result.logits.get("clips", [])]
    before_paths = [str(p) for p in before.logits.get("clips", [])]
    sha_now = {c.path: c.sha256 for c in result.clips if getattr(c, "sha256", None)}
    by_sha = {c.sha256: c.path for c in before.clips if getattr(c, "sha256", None)}
    by_name: dict[str, str] = {}
    for p in before_paths:
        by_name.setdefault(Path(p).name, p)
    row_before = {p: i for i, p in enumerate(before_paths)}
    pairs = []
    for i, p in enumerate(now_paths):
        match = by_sha.get(sha_now.get(p)) if sha_now.get(p) else None
        match = match if match in row_before else by_name.get(Path(p).name)
        if match in row_before:
            pairs.append((i, row_before[match]))
    if not pairs:
        return None
    a = np.asarray(ref_before, dtype=np.float64)[[j for _, j in pairs]]
    b = np.asarray(ref_now, dtype=np.float64)[[i for i, _ in pairs]]
    if a.shape[1:] != b.shape[1:]:
        return {"clips": len(pairs), "max_abs": None, "top1_agreement": None, "note": f"classes changed: {a.shape[1]} -> {b.shape[1]}"}
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    finite = np.isfinite(diff)
    return {"clips": len(pairs), "max_abs": float(diff[finite].max()) if finite.any() else None,
            "top1_agreement": float(np.mean(np.argmax(a, 1) == np.argmax(b, 1)))}


def _change(before, now) -> dict:
    before, now = _number(before), _number(now)
    return {"previous": before, "current": now, "change": None if before is None or now is None else now - before}


def compare(result, previous: str | Path) -> dict:
    """This run against the previous release at ``previous`` (report or golden folder):
    ``{previous, kind, previous_model, model, threshold: {growth, floor}, backends: [{backend, precision, max_abs,
    tolerance_margin, top1_agreement, accuracy (each {previous, current, change}), margin_growth, per_class,
    warning}], reference: {...} | None, warnings: [str]}``. Warnings never change the verdict."""
    before = load(previous)
    now_classes, before_classes = _per_class(result), _per_class(before)
    previous_by_backend = {c.backend: c for c in before.comparisons}
    backends, warnings = [], []
    for c in result.comparisons:
        p = previous_by_backend.get(c.backend)
        entry = {"backend": c.backend, "precision": c.precision, "previous_reference": getattr(p, "reference", None) if p else None}
        for metric in METRICS:
            entry[metric] = _change(getattr(p, metric, None) if p else None, getattr(c, metric))
        margin = entry["tolerance_margin"]
        growth = None
        if margin["previous"] is not None and margin["current"] is not None:
            growth = margin["current"] / margin["previous"] if margin["previous"] > 0 else (math.inf if margin["current"] > 0 else 1.0)
        entry["margin_growth"] = growth if growth is None or math.isfinite(growth) else None
        entry["warning"] = None
        if growth is not None and growth > MARGIN_GROWTH and margin["current"] >= MARGIN_FLOOR:
            times = f"x{growth:.3g}" if math.isfinite(growth) else "from 0"
            entry["warning"] = (f"{c.backend}: tolerance margin grew {times} against the previous release "
                                f"({margin['previous']:.3g} -> {margin['current']:.3g}; warning past x{MARGIN_GROWTH:g})")
            warnings.append(entry["warning"])
        entry["per_class"] = _class_changes(now_classes, before_classes, c.backend)
        backends.append(entry)
    reference = _reference_drift(result, before)
    if reference is not None:
        reference["per_class"] = _class_changes(now_classes, before_classes, result.reference)
        reference["accuracy"] = _change(_accuracy(before_classes), _accuracy(now_classes))
    return {"previous": str(Path(previous)), "kind": before.kind, "previous_model": model(before), "model": model(result),
            "previous_verdict": before.verdict, "threshold": {"growth": MARGIN_GROWTH, "floor": MARGIN_FLOOR},
            "backends": backends, "reference": reference, "warnings": warnings}


def _accuracy(classes: dict | None) -> float | None:
    """The reference's accuracy over all labelled clips, from a per-class record."""
    if not classes:
        return None
    hits = sum(a * n for a, n in zip(classes["reference_accuracy"], classes["clips"]) if a is not None)
    total = sum(n for a, n in zip(classes["reference_accuracy"], classes["clips"]) if a is not None)
    return hits / total if total else None


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}"


def _signed(value) -> str:
    if value is None:
        return "–"
    return "0" if value == 0 else f"{value:+.3g}"


def summary_line(trend: dict, inert=str) -> str:
    """One Markdown line for the PR summary: each backend's margin and top-1 agreement, previous -> now."""
    parts = []
    for b in trend["backends"]:
        m, t = b["tolerance_margin"], b["top1_agreement"]
        if m["previous"] is None and t["previous"] is None:
            continue
        flag = " ⚠️" if b["warning"] else ""
        parts.append(f"{inert(b['backend'])} margin {_fmt(m['previous'])} → {_fmt(m['current'])}{flag}, "
                     f"top-1 agreement {_fmt(t['previous'])} → {_fmt(t['current'])}")
    ref = trend.get("reference")
    if ref and ref.get("max_abs") is not None:
        parts.append(f"the reference against the previous release's: max abs {_fmt(ref['max_abs'])}, "
                     f"top-1 agreement {_fmt(ref['top1_agreement'])} over {ref['clips']} clips")
    text = "; ".join(parts) if parts else "no backend of this run was in it"
    line = f"**Against the previous release** ({inert(trend['previous_model'])}): {text}."
    if trend["warnings"]:
        line += f" **Warning** (not a failure): margin grew past x{trend['threshold']['growth']:g} for " + \
                ", ".join(inert(w.split(":")[0]) for w in trend["warnings"]) + "."
    return line


def compare_releases(folders) -> str:
    """``parity compare-releases A B ...``: saved report folders, oldest first, side by side. Per backend and
    metric one row: each release's value and the change from the first to the last; warnings as compare()'s
    (a margin that grew past MARGIN_GROWTH between consecutive releases)."""
    releases = [load(f) for f in folders]
    if len(releases) < 2:
        raise HarnessError("compare-releases needs two or more saved reports (oldest first)")
    for r in releases:
        if r.kind != "report":
            raise HarnessError(f"{r.folder}: a golden folder has no backends' numbers; give the report folder it was saved from")
    names = [f"{i + 1}: {model(r)}" for i, r in enumerate(releases)]
    head = ["Releases (oldest first):"] + [f"  {n}  [{r.verdict or '?'}]  {r.folder}" for n, r in zip(names, releases)]
    backends: list[str] = []
    for r in releases:
        backends += [c.backend for c in r.comparisons if c.backend not in backends]
    columns = ["backend", "metric"] + [str(i + 1) for i in range(len(releases))] + ["change"]
    rows, warnings = [], []
    for backend in backends:
        found = [next((c for c in r.comparisons if c.backend == backend), None) for r in releases]
        for metric in METRICS:
            values = [_number(getattr(c, metric, None)) if c else None for c in found]
            first, last = values[0], values[-1]
            rows.append([backend, _LABELS[metric]] + [_fmt(v) for v in values]
                        + [_signed(last - first if first is not None and last is not None else None)])
        margins = [_number(getattr(c, "tolerance_margin", None)) if c else None for c in found]
        for i in range(1, len(margins)):
            a, b = margins[i - 1], margins[i]
            if a is not None and b is not None and b >= MARGIN_FLOOR and (a == 0 or b / a > MARGIN_GROWTH):
                warnings.append(f"warning (not a failure): {backend}: tolerance margin {_fmt(a)} -> {_fmt(b)} "
                                f"from release {i} to {i + 1} (past x{MARGIN_GROWTH:g})")
    widths = [max(len(str(x)) for x in [col] + [row[k] for row in rows]) for k, col in enumerate(columns)]
    table = ["  ".join(str(x).ljust(w) for x, w in zip(columns, widths)).rstrip()]
    table += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    per_class = []
    first_classes, last_classes = _per_class(releases[0]), _per_class(releases[-1])
    for backend in backends:
        for row in _class_changes(last_classes, first_classes, backend):
            name = releases[-1].label_names.get(str(row["class"]), row["class"])
            per_class.append(f"  {backend}: class {name}: accuracy {_fmt(row['previous'])} -> {_fmt(row['current'])}")
    out = head + [""] + table
    if per_class:
        out += ["", "Per-class accuracy that moved (first -> last release):"] + per_class
    if warnings:
        out += [""] + warnings
    return "\n".join(out) + "\n"
