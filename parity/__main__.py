"""``python -m parity`` and the ``parity`` executable.

Ctrl-C is the harness's from the first moment: the handler is in place before the command line's
imports (Paddle, ONNX Runtime, Polygraphy: seconds), so an interruption there is one line too.
"""
import sys

from .signals import INTERRUPTED, handle_interrupts, interrupted


def main() -> int:
    handle_interrupts()
    try:  # startup: the command line's imports take seconds, and a Ctrl-C in them is ours to report
        from .cli import main as cli

        return cli()
    except BaseException:
        if INTERRUPTED.is_set():  # Ctrl-C during the imports or the parsing, whatever a library made of it
            return interrupted()
        raise


if __name__ == "__main__":  # spawned backend processes import this module too; they must not run the CLI
    sys.exit(main())
