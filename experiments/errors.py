"""The one exception that means bad input (the CLI prints its one-line message and exits 2), and how a
failed run names the error that failed it.

In its own module so that the CLI and the sweep's workers can use them without importing the config
schema (or anything heavier) first.
"""


class ConfigError(ValueError):
    """Bad input (a config field, a file, an argument, a store): the message is one line naming
    what is wrong and how to fix it."""


def describe_error(error: BaseException) -> str:
    """``error`` as a failed run's ``error`` tag and a failed trial's attribute name it: type and message."""
    return f"{type(error).__name__}: {error}".strip()
