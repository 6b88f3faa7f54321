"""Errors that reach a user as one line."""


class HarnessError(Exception):
    """The harness cannot run at all (bad arguments, missing model, no readable clip): exit 2."""
