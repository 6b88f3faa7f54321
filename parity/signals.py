"""Ctrl-C and SIGTERM: the command line's handling of them (an interruption, one line, exit 128 + the signal), and
holding them back while the harness does something they must not cut in half.

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
import sys
import threading
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)

# Set by the command line's SIGINT and SIGTERM handler. Some libraries turn a KeyboardInterrupt raised inside
# them into their own error (paddle's import reports "initialization failed"): the run checks this
# flag before it reports, so an interrupted run never writes a report that blames a backend.
INTERRUPTED = threading.Event()
_BY = [signal.SIGINT]  # the signal that interrupted this call


def on_interrupt(signum, frame):
    """The command line's SIGINT and SIGTERM handler: flag the interruption, then end what runs with a KeyboardInterrupt,
    so a SIGTERM (a CI job cancelled) cleans up as a Ctrl-C does: children stopped, temporary files gone."""
    _BY[0] = signum
    INTERRUPTED.set()
    raise KeyboardInterrupt


def handle_interrupts() -> dict:
    """This call's Ctrl-C and SIGTERM end it as an interruption (handlers in the main thread only); an earlier call's
    interruption is forgotten. The handlers replaced, for ``restore_handlers``."""
    INTERRUPTED.clear()
    _BY[0] = signal.SIGINT
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, on_interrupt) for sig in HELD}


def restore_handlers(replaced: dict) -> None:
    """Put back what ``handle_interrupts`` replaced (a handler set outside Python, None, cannot be, and stays ours)."""
    for sig, handler in replaced.items():
        if handler is not None:
            signal.signal(sig, handler)


def interrupted() -> int:
    """Say that the run was interrupted (naming a SIGTERM); the exit status, 128 + the signal: 130 for a Ctrl-C, 143 for a SIGTERM."""
    by = _BY[0]
    print("parity: interrupted" + ("" if by == signal.SIGINT else f" ({signal.Signals(by).name})"), file=sys.stderr, flush=True)
    return 128 + by


def check_interrupted() -> None:
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


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
