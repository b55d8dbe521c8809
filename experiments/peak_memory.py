"""Peak resident memory of one run, in a process that may run several in a row.

Linux keeps a resettable high-water mark of the process's resident set (``VmHWM`` in
``/proc/self/status``; writing ``5`` to ``/proc/self/clear_refs`` sets it back to the current
resident size), so each run's ``cost/peak_rss_bytes`` is the peak while that run ran (the
interpreter and the libraries already loaded included). Elsewhere only the process's lifetime
peak (``getrusage``) is known; :func:`reset_peak_rss` then says so and the runner tags the run.

A run's peak would still start from what the runs before it left resident: glibc keeps the memory a
run freed in its arenas. After a SmolLM2 GRPO run that was most of a 4 GB resident set, so the
next run's logged peak included it. :func:`reset_peak_rss` hands such memory back first
(``malloc_trim``, where the C library is glibc). What earlier runs left for Python's collector (reference
cycles: a run's paradigm, model and trainer) is collected before each run of a process that makes several
(``experiments.run.run_of_several``: a grid, a grid worker, a sweep's trials), so it is not counted either;
a caller of ``execute`` alone (a benchmark's repeats) collects for itself.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK = "5"  # clear_refs command: reset the peak resident set size (Linux >= 4.0)


def peak_rss_scope() -> str:
    """``run`` where :func:`reset_peak_rss` works (Linux), else ``process``: what a run's peak covers."""
    import os

    return "run" if os.access(_CLEAR_REFS, os.W_OK) and _high_water_mark() is not None else "process"


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _c_library_function(name: str, argtypes: list, restype):
    """The C library's function ``name`` with its signature set, or None where it has none (not glibc:
    macOS, musl; an older glibc)."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, restype
    return function


def freed_but_kept_bytes() -> int | None:
    """Bytes the process has freed that the C allocator keeps in its arenas (glibc >= 2.33's
    ``mallinfo2().fordblks``, every arena); None where it cannot be read."""
    mallinfo2 = _c_library_function("mallinfo2", [], _MallInfo2)
    return int(mallinfo2().fordblks) if mallinfo2 is not None else None


def release_freed_memory() -> None:
    """Hand the memory the process has freed back to the system (glibc's ``malloc_trim(0)``; a no-op
    elsewhere). Costs well under a millisecond when there is little to give back."""
    trim = _c_library_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
    if trim is not None:  # elsewhere: nothing to trim
        trim(0)


def reset_peak_rss() -> bool:
    """Start a new peak at the current resident size, after handing freed memory back
    (:func:`release_freed_memory`); False when the platform cannot (lifetime peak)."""
    release_freed_memory()
    try:
        _CLEAR_REFS.write_text(RESET_PEAK)
    except OSError:
        return False
    return _high_water_mark() is not None


def peak_rss_bytes() -> int:
    """Peak resident memory since the last :func:`reset_peak_rss` (else since the process started)."""
    high_water = _high_water_mark()
    if high_water is not None:
        return high_water
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _high_water_mark() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None
