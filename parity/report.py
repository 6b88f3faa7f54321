"""Reports of a run: results.json, logits.npz, clips.csv and a self-contained index.html."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

from .results import RunResult


def write_report(result: RunResult, out_dir: str | Path) -> Path:
    """Write every report file into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    (out / "results.json").write_text(json.dumps(data, indent=2, default=_json_default))
    if result.logits:
        np.savez_compressed(out / "logits.npz", **result.logits)
    table = clip_table(result)
    table.to_csv(out / "clips.csv", index=False)
    html = render_html(result, table)
    path = out / "index.html"
    path.write_text(html, encoding="utf-8")
    return path


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not serializable: {type(obj).__name__}")


def clip_table(result: RunResult):
    """One row per (backend, clip) comparison, worst first, plus a row per unreadable clip."""
    import pandas as pd

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


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def latency_plot(result: RunResult) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [b for b in result.backends if b.latency_ms]
    if not ran:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(ran)))
    ax.boxplot([b.latency_ms for b in ran], orientation="horizontal", tick_labels=[b.name for b in ran])
    ax.set_xlabel("inference time per clip (ms)")
    return _png(fig)


def render_html(result: RunResult, table) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("parity", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = _fmt
    template = env.get_template("report.html.j2")
    return template.render(
        r=result,
        data=result.to_dict(),
        rows=table.to_dict("records"),
        latency_png=latency_plot(result),
        names=result.label_names,
    )


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
