"""Reports of a run: results.json, logits.npz, frames.npz, clips.csv/.parquet and a self-contained index.html.

The HTML stays a few MB for thousands of clips: it shows the summaries, every failing, flipped or
unreadable clip (up to ``MAX_HTML_FLAGGED_ROWS``, with a count of the rest) and the worst passing
clips of each backend; the full per-clip table is clips.csv and clips.parquet.
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import classes
from .artifacts.cache import sha256_file
from .conclusion import lines as conclusion_lines
from .diagnose.repro import write_repro
from .errors import HarnessError
from .optional import lazy
from .plots import matplotlib, png, pyplot
from .results import RunResult
from .signals import held

pd = lazy("pandas")
jinja2 = lazy("jinja2")
PIL_Image = lazy("PIL.Image")

MAX_HTML_FLAGGED_ROWS = 200
WORST_PASSING_ROWS = 10  # per backend
MAX_SCATTER_POINTS = 20_000


REPORT_FILES = ("results.json", "logits.npz", "frames.npz", "clips.csv", "clips.parquet", "index.html", "repro")


def write_report(result: RunResult, out_dir: str | Path) -> Path:
    """Write every report file into ``out_dir``, atomically; returns the HTML path.

    The files are written into a temporary folder beside ``out_dir``, which then replaces it with
    SIGINT/SIGTERM held back: an interrupted or crashed run leaves the previous complete report
    (or none), never a mix of two runs. Anything else in ``out_dir`` (the demo's model/ and
    clips/, say) stays where it is. A folder that cannot be written is a one-line HarnessError.
    """
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise HarnessError(f"{out}: --report must be a folder, and this is a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise HarnessError(f"{out}: cannot write the report there: {exc.strerror or exc}") from None
    try:
        _write_files(result, tmp)
        _swap_into_place(tmp, out)
    except OSError as exc:
        raise HarnessError(f"{out}: cannot write the report there: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"


def _swap_into_place(new: Path, out: Path) -> None:
    """``new`` becomes ``out``, with SIGINT/SIGTERM held back until it has.

    A folder holding only report files is replaced whole (two renames). A folder holding other
    things too (the demo's model/ and clips/, or a user's files) is never moved: the report files
    are renamed into it one by one instead, and old report files this run did not write go.
    """
    trash = None
    with held():
        if out.is_dir() and any(entry.name not in REPORT_FILES for entry in out.iterdir()):
            for name in REPORT_FILES:
                if (out / name).is_dir():
                    (out / name).rename(new / f".old-{name}")  # removed with the temporary folder
                if (new / name).exists():
                    os.replace(new / name, out / name)
                elif (out / name).exists():
                    (out / name).unlink()
        else:
            if out.is_dir():
                trash = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(trash)
            new.rename(out)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def strict_json(data):
    """``data`` with every non-finite float replaced by None, and the JSON paths of those values."""
    replaced = []

    def walk(value, where):
        if isinstance(value, (float, np.floating)):
            if math.isfinite(value):
                return float(value)
            replaced.append(where)
            return None
        if isinstance(value, (np.integer,)):
            return int(value)
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(data, ""), replaced


def _write_files(result: RunResult, out: Path) -> None:
    data, replaced = strict_json(result.to_dict())
    data["complete"] = True  # only ever written by a finished run
    data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
    # Strict JSON has no NaN or Infinity: such values are null, and listed here.
    data["nonfinite_values"] = replaced
    if result.logits:
        # a model's view rows beside the aggregated ones: NAME[views], [clips, views, C]
        np.savez_compressed(out / "logits.npz", **result.logits, **{f"{n}[views]": v for n, v in result.view_logits.items()})
    if result.frames:
        np.savez_compressed(out / "frames.npz", **result.frames)
    # results.json pins the arrays beside it: `parity merge` and `parity golden save` read them only if they match
    data["files_sha256"] = {name: sha256_file(out / name) for name in ("logits.npz", "frames.npz") if (out / name).is_file()}
    (out / "results.json").write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=False))
    table = clip_table(result)
    table.to_csv(out / "clips.csv", index=False)
    table.to_parquet(out / "clips.parquet", index=False)
    repro = write_repro(result, out, data["finished"])
    html = render_html(result, table, finished=data["finished"], repro=repro is not None)
    (out / "index.html").write_text(html, encoding="utf-8")


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not serializable: {type(obj).__name__}")


def clip_table(result: RunResult):
    """One row per (backend, clip) comparison, worst first, plus a row per unreadable clip."""
    rows = []
    for comp in result.comparisons:
        for c in comp.clips:
            rows.append(
                {
                    "backend": comp.backend,
                    "clip": c.path,
                    "label": c.label,
                    "status": "pass" if c.passed else "FAIL",
                    "max_abs": c.max_abs,
                    "mean_abs": c.mean_abs,
                    "max_rel": c.max_rel,
                    "cosine": c.cosine,
                    "top1_reference": c.top1_reference,
                    "top1_backend": c.top1_backend,
                    "top1_agrees": c.top1_agrees,
                    "top5_overlap": c.top5_overlap,
                    "problems": "; ".join(c.problems),
                }
            )
    for clip in result.clips:
        if clip.status != "ok":
            rows.append({"backend": "", "clip": clip.path, "label": clip.label, "status": "ERROR", "problems": clip.error})
    table = pd.DataFrame(rows, columns=[
        "backend", "clip", "label", "status", "max_abs", "mean_abs", "max_rel", "cosine",
        "top1_reference", "top1_backend", "top1_agrees", "top5_overlap", "problems",
    ])
    if len(table):
        order = {"ERROR": 0, "FAIL": 1, "pass": 2}
        table = table.assign(_o=table["status"].map(order), _e=-table["max_abs"].fillna(np.inf))
        table = table.sort_values(["_o", "_e"], kind="stable").drop(columns=["_o", "_e"])
    return table


def latency_plot(result: RunResult) -> str | None:
    plt = pyplot()
    ran = [b for b in result.backends if b.latency_ms]
    if not ran:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(ran)))
    ax.boxplot([b.latency_ms for b in ran], orientation="horizontal", tick_labels=[b.name for b in ran])
    ax.set_xlabel("inference time per clip (ms)")
    return png(fig)


def error_plots(result: RunResult) -> dict[str, dict[str, str]]:
    """Per compared backend: a log-scale histogram of |error| and a reference-vs-backend scatter."""
    plt = pyplot()
    plots = {}
    for comp in result.comparisons:
        ref, out = result.logits.get(comp.reference), result.logits.get(comp.backend)
        if ref is None or out is None:
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN: counted below, never plotted
            err = np.abs(out.astype(np.float64) - ref.astype(np.float64)).ravel()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
        finite = err[np.isfinite(err)]
        positive = finite[finite > 0]
        atol = comp.tolerance["atol"]
        if positive.size:
            lo, hi = np.log10(positive.min()), np.log10(positive.max())
            if hi - lo < 1e-6:  # one value (or all equal): a decade around it
                lo, hi = lo - 0.5, hi + 0.5
            ax1.hist(positive, bins=np.logspace(lo, hi, 40), color="#b3261e" if not comp.passed else "#1e7f3c")
            ax1.set_xscale("log")
            ax1.set_yscale("log")
        else:
            ax1.text(0.5, 0.5, "no finite non-zero error", ha="center", va="center", transform=ax1.transAxes)
        if atol > 0 or not positive.size:
            ax1.axvline(atol, color="k", linestyle="--", label=f"atol {atol:g}")
            ax1.legend(loc="upper right", fontsize=8)
        ax1.set_xlabel("|backend - reference| per logit")
        ax1.set_ylabel("logits")
        nonfinite = err.size - finite.size
        ax1.set_title(f"{comp.backend}: error distribution ({int((finite == 0).sum())} exact"
                      + (f", {nonfinite} NaN/Inf)" if nonfinite else ")"))
        xs, ys = ref.ravel(), out.ravel()
        both = np.isfinite(xs) & np.isfinite(ys)  # a NaN or Inf logit has no place on the axes
        xs, ys = xs[both], ys[both]
        if xs.size > MAX_SCATTER_POINTS:  # an even sample keeps thousands of clips readable and the PNG small
            pick = np.random.default_rng(0).choice(xs.size, MAX_SCATTER_POINTS, replace=False)
            xs, ys = xs[pick], ys[pick]
            ax2.set_title(f"logits against the reference ({MAX_SCATTER_POINTS:,} of {int(both.sum()):,} sampled)")
        else:
            ax2.set_title("logits against the reference")
        if xs.size:
            ax2.scatter(xs, ys, s=4, alpha=0.6)
            lo, hi = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
            ax2.plot([lo, hi], [lo, hi], color="k", linewidth=0.6)
        else:
            ax2.text(0.5, 0.5, "no pair of finite logits", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_xlabel(f"{comp.reference} logit")
        ax2.set_ylabel(f"{comp.backend} logit")
        fig.tight_layout()
        plots[comp.backend] = png(fig)
    return plots


HOP_CMAP = "viridis"  # perceptually uniform; each cell's text is black or white, whichever contrasts more with it


def _luminance(rgb) -> float:
    """WCAG relative luminance of an sRGB colour (components 0..1)."""
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a, b) -> float:
    """WCAG contrast ratio of two sRGB colours (1 to 21; 4.5 is the floor for body text)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _css(rgb) -> str:
    return "rgb({}, {}, {})".format(*(int(round(255 * c)) for c in rgb[:3]))


def hop_heatmap(result: RunResult) -> dict | None:
    """The pairwise max abs difference of every backend that ran, as an HTML heat map: each cell's colour on a
    log scale (``HOP_CMAP``), its value written in black or white (whichever contrasts more with the cell), and
    the colour scale with its decades. ``{names, rows: [[{text, background, color, title}]], scale: [{css, label}],
    gradient}`` or None with fewer than two backends."""
    m = result.hop_matrix
    if not m or len(m.get("backends", [])) < 2:
        return None
    cmap = matplotlib.colormaps[HOP_CMAP]
    names, values = m["backends"], np.asarray(m["max_abs"], dtype=float)
    positive = np.isfinite(values) & (values > 0)
    if positive.any():
        lo, hi = np.floor(np.log10(values[positive].min())), np.ceil(np.log10(values[positive].max()))
        hi = max(hi, lo + 1)
    else:
        lo, hi = -7.0, 0.0

    def colour(value):
        return cmap(float((np.log10(value) - lo) / (hi - lo)))

    rows = []
    for i, a in enumerate(names):
        row = []
        for j, b in enumerate(names):
            v = values[i, j]
            if positive[i, j]:
                bg = colour(v)
                black, white = contrast(bg, (0, 0, 0)), contrast(bg, (1, 1, 1))
                fg = (0, 0, 0) if black >= white else (1, 1, 1)
            else:  # zero (the diagonal, identical outputs) or not measured
                bg, fg = (0.96, 0.96, 0.96), (0.11, 0.11, 0.12)
            row.append({"text": _cell(v), "background": _css(bg), "color": _css(fg), "title": f"{a} vs {b}: max abs {_cell(v)}"})
        rows.append(row)
    decades = np.arange(lo, hi + 1)
    scale = [{"css": _css(cmap(float((d - lo) / (hi - lo)))), "label": f"1e{int(d)}"} for d in decades]
    gradient = ", ".join(_css(cmap(x)) for x in np.linspace(0, 1, 11))
    return {"names": names, "rows": rows, "scale": scale, "gradient": gradient}


def depth_plots(result: RunResult) -> dict[str, str]:
    """Per localized pair: relative error of every matched tensor against its depth in the graph."""
    plt = pyplot()
    plots = {}
    for d in result.diagnosis:
        if not d.get("curve"):
            continue
        # a NaN or Inf error (a tensor that overflowed) is drawn at the top of the axis, not dropped
        depth = np.asarray([p["depth"] for p in d["curve"]], dtype=float)
        error = np.asarray([_float(p["error"]) for p in d["curve"]], dtype=float)
        tolerance = _float(d["tolerance"])
        finite = error[np.isfinite(error)]
        ceiling = 10 * max([1e-12, *finite.tolist(), *([tolerance] if np.isfinite(tolerance) else [])])
        error = np.clip(np.where(np.isfinite(error), error, ceiling), 1e-12, ceiling)
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.semilogy(depth, error, marker=".", linewidth=0.8)
        if np.isfinite(tolerance) and tolerance > 0:
            ax.axhline(d["tolerance"], color="k", linestyle="--", linewidth=0.8, label=f"tolerance {d['tolerance']:g}")
        if d.get("first_divergence"):
            k = next(i for i, p in enumerate(d["curve"]) if p["tensor"] == d["first_divergence"]["tensor"])
            ax.scatter([depth[k]], [error[k]], color="#b3261e", zorder=3, label=d["first_divergence"]["onnx_node"])
        ax.set_xlabel("depth (matched tensors, topological order)")
        ax.set_ylabel("relative error")
        ax.set_title(f"{d['backend']} vs {d['against']}: error against depth")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        plots[d["backend"]] = png(fig)
    return plots


def _thumbnail_strip(frames: np.ndarray) -> str:
    strip = np.concatenate(list(frames), axis=1)
    buf = io.BytesIO()
    PIL_Image.fromarray(strip).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def flagged_clips(result: RunResult, k: int = 5) -> list[dict]:
    """Failing or top-1-flipped clips: thumbnails, label, and each backend's top-5 side by side."""
    paths = list(result.logits.get("clips", []))
    rows = []
    for path, frames in result.frames.items():
        i = paths.index(path)
        top5 = {}
        for name, logits in result.logits.items():
            if name == "clips":
                continue
            top5[name] = top_k(logits[i], k)
        label = next((c.label for c in result.clips if c.path == path), None)
        problems = [f"{c.backend}: {'; '.join(cc.problems)}" for c in result.comparisons for cc in c.clips if cc.path == path and cc.problems]
        rows.append({"path": path, "label": label, "thumbs": _thumbnail_strip(frames), "top5": top5, "problems": problems})
    return rows


def top_k(row: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` highest classes with their softmax probability; a row holding NaN or Inf has no
    probabilities (NaN), and its NaN logits rank last."""
    row = np.asarray(row, dtype=np.float64)
    order = np.argsort(-row, kind="stable")[:k]  # +Inf first, NaN last
    if not np.isfinite(row).all():
        return [(int(c), float("nan")) for c in order]
    e = np.exp(row - row.max())
    prob = e / e.sum()
    return [(int(c), float(prob[c])) for c in order]


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def _cell(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.1e}" if np.isfinite(value) else "–"


def flips_by_class_pair(result: RunResult) -> list[dict]:
    """Top-1 flips counted per (backend, reference class -> backend class)."""
    counts: dict[tuple, int] = {}
    for comp in result.comparisons:
        for c in comp.clips:
            if not c.top1_agrees:
                key = (comp.backend, c.top1_reference, c.top1_backend)
                counts[key] = counts.get(key, 0) + 1
    return [{"backend": b, "reference_class": r, "backend_class": o, "clips": n} for (b, r, o), n in sorted(counts.items(), key=lambda kv: -kv[1])]


def render_html(result: RunResult, table, finished: str = "", repro: bool = False) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("parity", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.filters["num"] = _fmt
    env.filters["prob"] = lambda p: f"{p:.3f}" if p is not None and np.isfinite(p) else "–"
    env.filters["seconds"] = seconds
    env.filters["signed_num"] = lambda v: "–" if v is None or not np.isfinite(v) else ("0" if v == 0 else ("+" if v > 0 else "") + _fmt(v))
    env.filters["signed"] = lambda v: "–" if v is None or not np.isfinite(v) else ("0" if v == 0 else f"{v:+.3f}")
    template = env.get_template("report.html.j2")
    shown, hidden = html_rows(table)
    per_class = getattr(result, "per_class", None) or classes.per_class(result)
    if per_class and per_class["num_classes"] <= classes.MAX_MATRIX_CLASSES:
        per_class_rows = classes.worst_classes(per_class, k=len(per_class["classes"]))
        per_class_rows.sort(key=lambda row: row["class"])
    else:
        per_class_rows = classes.worst_classes(per_class) if per_class else []
    return template.render(
        per_class=per_class,
        trend=getattr(result, "baseline", None),
        per_class_rows=per_class_rows,
        confusion_pngs=classes.confusion_plots(per_class, result.label_names),
        r=result,
        conclusion=conclusion_lines(result),
        model_files=model_rows(result),
        data=result.to_dict(),
        rows=[_ints(row) for row in shown.to_dict("records")],
        hidden_flagged=hidden,
        max_flagged=MAX_HTML_FLAGGED_ROWS,
        finished=finished,
        repro=repro,
        depth_plots=depth_plots(result),
        hop_map=hop_heatmap(result),
        rtols=sorted({c.tolerance.get('rtol') for c in result.comparisons}, key=str),
        total_rows=len(table),
        latency_png=latency_plot(result),
        names=result.label_names,
        plots=error_plots(result),
        flagged=flagged_clips(result),
        flips=flips_by_class_pair(result),
    )


# The files that are the model, each with the content hash that identifies it (artifacts keys).
_MODEL_FILES = (("Paddle model", "paddle_model", ("paddle_model_sha256", "paddle_params_sha256")), ("ONNX", "onnx", ("onnx_sha256",)),
                ("TensorRT engine", "trt_engine", ("trt_engine_sha256",)), ("golden outputs", "golden", ("golden_npz_sha256",)))


def model_rows(result: RunResult) -> list[dict]:
    """The model's files for the report's header: ``{role, path, hashes: [(label, sha256)]}``."""
    art = result.artifacts or {}
    rows = []
    for role, key, hashes in _MODEL_FILES:
        if isinstance(art.get(key), str):
            found = [(h.replace("_sha256", "").replace("_", " "), art[h]) for h in hashes if isinstance(art.get(h), str)]
            rows.append({"role": role, "path": art[key], "hashes": found})
    return rows


def seconds(stamp: str) -> str:
    """``2026-11-30T01:50:12.123456789Z`` as ``2026-11-30 01:50:12 UTC``: a time a person reads, to the second."""
    if not stamp:
        return ""
    day, _, clock = str(stamp).partition("T")
    return f"{day} {clock.split('.')[0].rstrip('Z')} UTC" if clock else str(stamp)


def html_rows(table):
    """The rows the HTML shows: every failing, flipped or unreadable one (capped), then the worst
    passing rows of each backend. Returns them and how many flagged rows were left out."""
    flagged = table[(table["status"] != "pass") | (table["top1_agrees"] == False)]  # noqa: E712 (NaN-safe)
    rest = table.drop(flagged.index)
    worst = rest.groupby("backend", sort=False).head(WORST_PASSING_ROWS)
    hidden = max(0, len(flagged) - MAX_HTML_FLAGGED_ROWS)
    return pd.concat([flagged.head(MAX_HTML_FLAGGED_ROWS), worst]), hidden


def _ints(row: dict) -> dict:
    """pandas turns integer columns with gaps into floats; class ids go back to int (or None)."""
    for key in ("label", "top1_reference", "top1_backend"):
        value = row.get(key)
        if isinstance(value, float):
            row[key] = None if np.isnan(value) else int(value)
    return row


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    v = float(value)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits}e}"
    return f"{v:.{digits + 2}g}" if abs(v) < 1 else f"{v:.{digits}f}"
