"""Local worker processes, for sweeps and grids alike: their environment, and :func:`watch_workers`,
which starts them, shows the study's progress until they exit, and stops them on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from tqdm.auto import tqdm

from experiments.signals import sigterm_as_interrupt

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_environment(workers: int) -> dict[str, str]:
    """The environment of local workers: the CPU's cores split between them.

    Each torch process otherwise starts one compute thread per core; N workers then run N times
    as many threads as cores, and spinning OpenMP threads slowed trials ~20x on 2 cores (see
    benchmarks/sweep_workers.py). A thread count the user exported is kept.
    """
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = dict(os.environ)
    for variable in _THREAD_VARIABLES:
        env.setdefault(variable, threads)
    return env


def watch_workers(
    command: Sequence[str],
    workers: int,
    progress: Callable[[], tuple[int, Mapping[str, int]]],
    on_interrupt: Callable[[], None],
    *,
    total: int,
    desc: str,
    unit: str,
    poll_seconds: float = 2.0,
    show: bool = True,
) -> list[int]:
    """Run ``workers`` copies of ``command`` and return their exit statuses once all have exited.

    Meanwhile a progress bar of ``total`` ``unit``s shows ``progress()``: (how many are finished,
    the counts shown beside the bar), polled every ``poll_seconds``. Ctrl-C or SIGTERM: the
    workers get a few seconds to finish their own interrupt handling (:func:`stop_processes`),
    then ``on_interrupt()`` runs and KeyboardInterrupt propagates.
    """
    env = worker_environment(workers)
    processes = [subprocess.Popen(list(command), env=env) for _ in range(workers)]
    bar = tqdm(total=total, desc=f"{desc} ({workers} workers)", unit=unit, disable=not show)

    def refresh() -> None:
        finished, counts = progress()
        bar.n = min(finished, bar.total)
        bar.set_postfix(counts, refresh=False)
        bar.refresh()

    try:
        with sigterm_as_interrupt():
            while any(p.poll() is None for p in processes):
                refresh()
                time.sleep(poll_seconds)
            refresh()
            return [p.returncode for p in processes]
    except KeyboardInterrupt:
        stop_processes(processes)
        on_interrupt()
        raise
    finally:
        bar.close()


def stop_processes(processes: list[subprocess.Popen], patience: float = 5.0) -> None:
    """Let the workers finish their own Ctrl-C handling; interrupt the ones that did not hear it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.2)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
