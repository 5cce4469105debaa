"""Errors the user can act on: the CLI shows their message and exits non-zero, without a traceback."""


class StageError(Exception):
    """A stage cannot go on (nothing to train on, an unknown benchmark, ...); the message says why."""
