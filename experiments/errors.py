"""The one exception that means bad input: the CLI prints its one-line message and exits 2.

In its own module so that the CLI can catch it without importing the config schema (or anything
heavier) first.
"""


class ConfigError(ValueError):
    """Bad input (a config field, a file, an argument, a store): the message is one line naming
    what is wrong and how to fix it."""
