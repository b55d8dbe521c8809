"""The garbage collector skipping what existed before a block (``gc.freeze``), in nested blocks too.

A full collection walks every object the process holds: ~0.3 s once the ML stack and MLflow are loaded,
0.35-0.49 s late in a grid's process (``benchmarks/gc_pauses.py`` over the comparison's seed-0 grid),
more than a builtin GRPO step or evaluation. Inside :func:`older_objects_frozen` it looks only at what the
block made.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # blocks entered and not left


@contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Within the block, the collector skips every object that existed when it was entered; a nested block
    freezes what is new since, and only the outermost gives everything back on leaving (``gc.unfreeze``):
    what the blocks made and dropped is collected as usual, what came before is looked at again after them.
    Garbage from before the block (reference cycles) stays until then: collect it first (``gc.collect``)
    when it may be large, such as a previous run's model."""
    global _depth
    gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
