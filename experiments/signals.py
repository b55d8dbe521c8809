"""SIGTERM handled like Ctrl-C, so a process stopped with ``kill`` closes its MLflow runs.

Without it, a terminated ``harness run`` dies without unwinding and leaves its runs RUNNING
forever in the MLflow UI; with it, the ``KeyboardInterrupt`` handlers that already mark runs
KILLED (and sweep trials FAIL) run for SIGTERM too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt``; the previous handler is restored after.

    Signal handlers can only be set from the main thread; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
