"""Native libraries (FFmpeg via decord, Paddle's C++ passes) print straight to file descriptors 1
and 2. ``captured_output`` catches that at the descriptor level, so it can go into a one-line error
instead of scrolling past the user."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_output(fds: tuple[int, ...] = (1, 2)):
    """Redirect ``fds`` to a temp file; ``captured["text"]`` holds what was written, after exit."""
    captured = {"text": ""}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [(fd, os.dup(fd)) for fd in fds]
        for fd, _ in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            captured["text"] = tmp.read().decode("utf-8", "replace")
