"""Ctrl-C and SIGTERM held back while the harness does something they must not cut in half.

A held signal is not lost: it waits and lands as the block ends. Two things are held: a report
folder swapping into place (``report``), and a child process starting (``stream``'s decode workers,
``backends.isolated``'s backend processes); a child interrupted mid-start would read half of what
it was sent and print a traceback.

Two mechanisms, because a process here has many threads (ONNX Runtime's, Paddle's, tqdm's) and
the kernel hands a signal to any thread that does not block it: in the main thread, a Python-level
handler that only notes the signal, so whichever thread takes it nothing happens until the block
ends; and the calling thread's signal mask, which a child started in the block inherits, so the
child cannot be cut down either while it unpacks its orders. It calls ``release`` once its own
handling of those signals is in place.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def held():
    """SIGINT and SIGTERM wait until the block is done, then land as they would have."""
    noted: list[int] = []
    deferred = {}
    if threading.current_thread() is threading.main_thread():
        for sig in HELD:
            handler = signal.getsignal(sig)
            # A handler set outside Python (None) could not be put back, and an ignored signal needs nothing.
            if handler is not None and handler != signal.SIG_IGN:
                deferred[sig] = signal.signal(sig, lambda signum, frame: noted.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in deferred.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(noted):
            signal.raise_signal(sig)


def release() -> None:
    """In a child started under ``held``, once it handles SIGINT its own way: the held signals land now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
