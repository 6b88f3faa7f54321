"""Errors that reach a user as one line."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, whitespace folded, at most 500 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class HarnessError(Exception):
    """The harness cannot run at all (bad arguments, missing model, no readable clip): exit 2."""
