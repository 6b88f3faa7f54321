"""Errors that reach a user as one line."""
import threading


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, whitespace folded, at most 500 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class HarnessError(Exception):
    """The harness cannot run at all (bad arguments, missing model, no readable clip): exit 2."""


# Set by the command line's SIGINT handler. Some libraries turn a KeyboardInterrupt raised inside
# them into their own error (paddle's import reports "initialization failed"): the run checks this
# flag before it reports, so an interrupted run never writes a report that blames a backend.
INTERRUPTED = threading.Event()


def on_sigint(signum, frame):
    """The command line's SIGINT handler: flag the interruption, then end what runs with a KeyboardInterrupt."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


def check_interrupted() -> None:
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
