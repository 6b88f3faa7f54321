"""Errors that reach a user as one line, and interruptions."""
import signal
import sys
import threading


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, whitespace folded, at most 500 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class HarnessError(Exception):
    """The harness cannot run at all (bad arguments, missing model, no readable clip): exit 2."""


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
    return {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}


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
