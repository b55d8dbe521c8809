"""Local worker processes, for sweeps and grids alike: their environment, and :func:`work_alongside`,
which runs one worker in the calling process beside the others as child processes, and stops the
children on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from experiments.background_evaluation import LOCAL_WORKERS_VARIABLE
from experiments.signals import sigterm_as_interrupt

T = TypeVar("T")

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
    env[LOCAL_WORKERS_VARIABLE] = str(workers)  # no core is left for evaluating beside training
    return env


@contextlib.contextmanager
def cores_shared_here(workers: int) -> Iterator[None]:
    """While inside, this process has the thread share :func:`worker_environment` gives each child.

    The variables are read when torch starts its thread pool; where torch is already loaded its
    thread count is set too. A thread count the user exported is kept; everything is restored after.
    """
    saved = {variable: os.environ.get(variable) for variable in (*_THREAD_VARIABLES, LOCAL_WORKERS_VARIABLE)}
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    share = worker_environment(workers)
    for variable in saved:
        os.environ[variable] = share[variable]
    if torch is not None and saved["OMP_NUM_THREADS"] is None:
        torch.set_num_threads(int(share["OMP_NUM_THREADS"]))
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
        if torch is not None:
            torch.set_num_threads(threads)


def work_alongside(
    command: Sequence[str], workers: int, local: Callable[[], T], on_interrupt: Callable[[], None]
) -> tuple[T, list[int]]:
    """Run ``local()`` (one worker, in this process) beside ``workers - 1`` copies of ``command``.

    The coordinating process works instead of only watching: ``workers`` processes share the cores
    (:func:`worker_environment`, :func:`cores_shared_here`), and one fewer process pays for starting
    the ML stack. Returns what ``local()`` returned and, once they have exited, the children's exit
    statuses. Ctrl-C or SIGTERM: ``local()`` does its own interrupt bookkeeping, the children get a few
    seconds to do theirs (:func:`stop_processes`), then ``on_interrupt()`` runs and KeyboardInterrupt
    propagates. Any other error of ``local()`` stops the children the same way and propagates.
    """
    env = worker_environment(workers)
    processes = [subprocess.Popen(list(command), env=env) for _ in range(workers - 1)]
    try:
        with sigterm_as_interrupt(), cores_shared_here(workers):
            result = local()
            return result, [process.wait() for process in processes]
    except KeyboardInterrupt:
        stop_processes(processes)
        on_interrupt()
        raise
    except BaseException:
        stop_processes(processes)
        raise


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
