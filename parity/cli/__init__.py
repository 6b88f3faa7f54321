"""The ``parity`` command line: one module per command family; ``parity run``'s flags come from RunConfig's fields."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import warnings

os.environ.setdefault("GLOG_minloglevel", "2")  # keep Paddle's C++ logging off the user's terminal
warnings.filterwarnings("ignore", message="No ccache found")  # paddle's import-time notice
logging.getLogger("matplotlib").setLevel(logging.WARNING)

from ..errors import HarnessError, one_line  # noqa: E402
from ..schedule import passive_wait  # noqa: E402
from ..signals import INTERRUPTED, handle_interrupts, interrupted, restore_handlers  # noqa: E402
from . import diagnose, info, models, run  # noqa: E402
from .common import EXIT_FAIL, EXIT_HARNESS, EXIT_PASS, say, summary  # noqa: E402, F401  (the exit codes and summary, for callers)

# name -> (add its parser, run it), in the order --help lists them
COMMANDS = {**models.COMMANDS, **run.COMMANDS, **diagnose.COMMANDS, **info.COMMANDS}
ORDER = ("demo", "run", "merge", "schema", "compare-releases", "export", "preprocess", "golden", "backends", "build",
         "lint", "localize", "advise", "tolerances", "convert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description="PP-TSM deployment parity harness")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ORDER:
        COMMANDS[name][0](sub)
    return parser


def _unraisable(hook):
    """A Ctrl-C that lands in a callback Python cannot raise from (a weakref's, a finalizer's) would be printed
    as 'Exception ignored ... Traceback'; the interruption is already flagged and ends the run at the next check."""
    def quiet(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            INTERRUPTED.set()
            return
        hook(unraisable)

    return quiet


def main(argv: list[str] | None = None) -> int:
    passive_wait()  # OpenMP pools sleep when done (unless the user set them): before Paddle loads, here and in every child
    args = build_parser().parse_args(argv)
    replaced = handle_interrupts()  # Ctrl-C and SIGTERM; a Ctrl-C of an earlier call in this process is not this one's
    if threading.current_thread() is threading.main_thread():
        sys.unraisablehook = _unraisable(sys.__unraisablehook__)
    try:
        return COMMANDS[args.command][1](args)
    except KeyboardInterrupt:
        return interrupted()
    except Exception as exc:
        if INTERRUPTED.is_set():  # a library made the Ctrl-C its own error (paddle's import: "Failed to import paddle")
            return interrupted()
        if isinstance(exc, HarnessError):
            say(f"parity: error: {exc}")
            return EXIT_HARNESS
        if os.environ.get("PARITY_DEBUG"):  # a bug of ours: one line for the user, the traceback on request
            raise
        say(f"parity: internal error: {one_line(exc)} (PARITY_DEBUG=1 shows the traceback)")
        return EXIT_HARNESS
    finally:
        restore_handlers(replaced)  # a program that called main keeps its own
