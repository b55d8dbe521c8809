"""The memory this process and its children hold together, sampled while a block runs.

Each process's proportional set size (``Pss`` in ``/proc/<pid>/smaps_rollup``) counts a page shared by
``n`` processes as ``1/n`` of a page, so the sum over a process and the copies it forked is what they
hold together: a forked copy adds only the pages one of them has written since the fork. Linux only;
elsewhere :class:`PeakMemory` reports None.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")


def pss_bytes(pid: int) -> int | None:
    """The proportional set size of process ``pid`` in bytes (None when it is gone or unreadable)."""
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def child_pids(pid: int) -> list[int]:
    """The live children of process ``pid`` (from every thread's ``children`` list; nothing is reaped)."""
    children: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return children
    for task in tasks:
        try:
            children.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return children


class PeakMemory:
    """``with PeakMemory() as memory: ...``, then ``memory.peak_bytes``: the largest sum of the Pss of this
    process and its children seen every ``interval`` seconds (None where /proc has no ``smaps_rollup``)."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        pid = os.getpid()
        own = pss_bytes(pid)
        if own is None:
            return
        total = own + sum(pss_bytes(child) or 0 for child in child_pids(pid))
        self.peak_bytes = max(self.peak_bytes or 0, total)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
