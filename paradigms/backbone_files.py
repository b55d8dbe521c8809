"""Where backbones' files live, the lock that builds each of them once, and the error of a backbone
that cannot be used here.

Apart from ``paradigms/backbone.py`` (which loads models with torch) so that checking a backbone
before anything runs (``experiments.backbones``) and the builtin bases' and SmolLM2's bookkeeping
import no model stack.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "HARNESS_CACHE_DIR"
#: The file a builtin base's directory holds beside its model (``experiments.base``).
BUILTIN_MARKER = "recipe.json"


class BackboneUnavailable(RuntimeError):
    """A backbone cannot be used here (a missing package or file, no chat template); says how to fix it."""


def cache_root() -> Path:
    """The harness's cache: built bases, converted models, backbone competence (``$HARNESS_CACHE_DIR``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "paradigm-harness")


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created, with its folder) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def file_lock(directory: Path) -> Iterator[None]:
    """An exclusive lock beside ``directory``, so parallel workers never build the same thing twice."""
    with exclusive_lock(directory.parent / f".{directory.name}.lock"):
        yield
