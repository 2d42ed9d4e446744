"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UnlearnkitError(Exception):
    """A user-facing error: the message says what went wrong and how to fix it."""
