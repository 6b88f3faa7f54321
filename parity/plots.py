"""Figures drawn off-screen (matplotlib's Agg backend) and returned as PNG data URIs, for the HTML report."""
from __future__ import annotations

import base64
import io

from .optional import lazy

matplotlib = lazy("matplotlib")
_pyplot = lazy("matplotlib.pyplot")


def pyplot():
    """matplotlib.pyplot, with the Agg backend selected first (no display needed)."""
    matplotlib.use("Agg")
    return _pyplot


def png(fig) -> str:
    """``fig`` as a PNG data URI; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
