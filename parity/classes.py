"""Per class: with labels, each backend's accuracy on every class against the reference's, the class pairs its
top-1 flips went between, and its confusion matrix. What a release manager checks first when a few clips flip:
whether the flips land on one class.

``per_class(result)`` computes it from ``result.logits`` (rows in the order of ``logits["clips"]``) and the clips'
labels; it is plain JSON (class ids in lists, never as keys), for ``results.json``'s ``per_class`` field. Only the
clips that are labelled and finite in both the reference and the backend count, as for the comparisons' accuracy.
"""
from __future__ import annotations

import numpy as np

from .optional import lazy
from .plots import png, pyplot

patches = lazy("matplotlib.patches")

# A confusion-matrix picture up to this many classes; beyond it, a table of the worst classes.
MAX_MATRIX_CLASSES = 50
WORST_CLASSES = 15


def _rows(result) -> tuple[list[int], list[int]]:
    """Row indices of ``result.logits`` whose clip is labelled, and those labels."""
    paths = [str(p) for p in result.logits.get("clips", [])]
    label = {c.path: c.label for c in result.clips if c.status == "ok"}
    rows = [i for i, p in enumerate(paths) if label.get(p) is not None]
    return rows, [int(label[paths[i]]) for i in rows]


def _accuracy(hits: np.ndarray, labels: np.ndarray, classes: list[int]) -> list[float | None]:
    return [float(hits[labels == k].mean()) if (labels == k).any() else None for k in classes]


def per_class(result) -> dict | None:
    """``{reference, num_classes, classes, clips, reference_accuracy, backends: [{backend, accuracy, delta, flips,
    confusion, reference_confusion}]}`` or None when no clip is labelled (or the reference has no logits).

    ``classes`` are the labelled classes (sorted), ``clips`` their clip counts; ``accuracy``, ``delta`` and
    ``reference_accuracy`` follow ``classes``. ``flips``: clips whose top-1 differs from the reference's, counted per
    (reference class, backend class), most first. ``confusion`` (label x predicted, over all ``num_classes``) only
    when ``num_classes`` <= MAX_MATRIX_CLASSES.
    """
    ref = result.logits.get(result.reference)
    rows, labels = _rows(result)
    if ref is None or not rows:
        return None
    ref = np.asarray(ref, dtype=np.float64)
    num_classes = int(ref.shape[1])
    classes = sorted(set(labels))
    labels_all = np.asarray(labels)
    ref_rows = ref[rows]
    ref_ok = np.isfinite(ref_rows).all(1)
    ref_top = np.argmax(np.where(np.isfinite(ref_rows), ref_rows, -np.inf), 1)
    out = {"reference": result.reference, "num_classes": num_classes, "classes": classes,
           "clips": [int((labels_all == k).sum()) for k in classes], "backends": []}
    out["reference_accuracy"] = _accuracy(ref_ok & (ref_top == labels_all), labels_all, classes)
    for comp in result.comparisons:
        logits = result.logits.get(comp.backend)
        if logits is None or comp.reference != result.reference:
            continue
        got = np.asarray(logits, dtype=np.float64)[rows]
        ok = ref_ok & np.isfinite(got).all(1)  # a NaN row has no class: it counts in neither accuracy
        y, r_top, b_top = labels_all[ok], ref_top[ok], np.argmax(got[ok], 1) if ok.any() else np.zeros(0, int)
        ref_acc = _accuracy(r_top == y, y, classes)
        acc = _accuracy(b_top == y, y, classes)
        pairs: dict[tuple[int, int], int] = {}
        for a, b in zip(r_top[r_top != b_top], b_top[r_top != b_top]):
            pairs[(int(a), int(b))] = pairs.get((int(a), int(b)), 0) + 1
        entry = {
            "backend": comp.backend,
            "accuracy": acc,
            "reference_accuracy": ref_acc,
            "delta": [None if a is None or r is None else a - r for a, r in zip(acc, ref_acc)],
            "flips": [{"reference_class": a, "backend_class": b, "clips": n}
                      for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))],
        }
        if num_classes <= MAX_MATRIX_CLASSES:
            entry["confusion"] = _confusion(y, b_top, num_classes)
            entry["reference_confusion"] = _confusion(y, r_top, num_classes)
        out["backends"].append(entry)
    return out


def _confusion(labels: np.ndarray, predicted: np.ndarray, n: int) -> list[list[int]]:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (labels[(labels < n) & (labels >= 0)], predicted[(labels < n) & (labels >= 0)]), 1)
    return m.tolist()


def worst_classes(data: dict, k: int = WORST_CLASSES) -> list[dict]:
    """The classes whose accuracy dropped most on any backend against the reference (then the least accurate):
    ``{class, clips, reference_accuracy, accuracy: {backend: value}, delta: {backend: value}, dropped}``."""
    rows = []
    for i, cls in enumerate(data["classes"]):
        delta = {b["backend"]: b["delta"][i] for b in data["backends"]}
        acc = {b["backend"]: b["accuracy"][i] for b in data["backends"]}
        worst = min([d for d in delta.values() if d is not None], default=0.0)
        lowest = min([a for a in acc.values() if a is not None], default=1.0)
        rows.append(((worst, lowest, cls), {"class": cls, "clips": data["clips"][i], "reference_accuracy": data["reference_accuracy"][i],
                                            "accuracy": acc, "delta": delta, "dropped": worst < 0}))
    rows.sort(key=lambda r: r[0])
    return [row for _, row in rows[:k]]


def confusion_plots(data: dict | None, names: dict | None = None) -> dict[str, str]:
    """Per backend, a PNG (data URI) of its confusion matrix (label x predicted), with the cells where it differs
    from the reference's outlined and their change written in; only for MAX_MATRIX_CLASSES classes or fewer."""
    if not data or data["num_classes"] > MAX_MATRIX_CLASSES:
        return {}
    plt = pyplot()
    names = names or {}
    n = data["num_classes"]
    ticks = [str(names.get(k, k)) for k in range(n)]
    plots = {}
    for b in data["backends"]:
        m = np.asarray(b["confusion"], dtype=float)
        change = m - np.asarray(b["reference_confusion"], dtype=float)
        side = min(12.0, 2.5 + 0.28 * n)
        fig, ax = plt.subplots(figsize=(side + 1.2, side))
        totals = m.sum(1, keepdims=True)
        share = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the class's clips")
        small = n <= 20
        for i, j in zip(*np.nonzero(change)):
            ax.add_patch(patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#b3261e", linewidth=1.6))
            if small:
                ax.text(j, i, f"{int(change[i, j]):+d}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "#b3261e")
        fontsize = 8 if n <= 20 else 6
        ax.set_xticks(range(n), ticks, rotation=60, ha="right", fontsize=fontsize)
        ax.set_yticks(range(n), ticks, fontsize=fontsize)
        ax.set_xlabel(f"{b['backend']} says")
        ax.set_ylabel("label")
        ax.set_title(f"{b['backend']}: confusion (outlined: changed against {data['reference']})", fontsize=9)
        fig.tight_layout()
        plots[b["backend"]] = png(fig)
    return plots
