"""Progress bars for long stages (tqdm), off when PARITY_PROGRESS=0 or stderr is not a terminal."""
from __future__ import annotations

import os
import sys

from .optional import lazy

tqdm_auto = lazy("tqdm.auto")


def enabled() -> bool:
    setting = os.environ.get("PARITY_PROGRESS")
    if setting is not None:
        return setting not in ("0", "false", "no")
    return sys.stderr.isatty()


def progress(iterable, desc: str, unit: str = "it", total: int | None = None):
    return tqdm_auto.tqdm(iterable, desc=desc, unit=unit, total=total, disable=not enabled(), leave=False, file=sys.stderr)
