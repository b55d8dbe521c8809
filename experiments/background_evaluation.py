"""An evaluation that runs beside training, in a forked copy of the run.

The runner evaluates a policy whose weights are fixed for the length of the evaluation. For a paradigm
whose evaluation reads its state and writes none (``Paradigm.evaluation_writes_no_state``: every one
here; an evaluation is a rollout, with retrieved notes for a memory, and a KL where weights move), a copy
of the process made by ``fork`` at the evaluation's event holds exactly what the run holds there: the
weights, the memory, the evaluation items, the session's world and the random state. It answers the same
questions the same way and returns the same metrics (and hands back what later evaluations reuse: the
answers it stored, a memory's question vectors), while the run goes on training in the parent. On this
2-core machine a run uses one torch thread; the copy uses the other core. ``fork`` shares the parent's
pages until either side writes them, so the copy costs the memory the parent's training writes meanwhile
and the evaluation's own tensors; memory the parent freed but its allocator kept is handed back before a
fork when there is much of it (:data:`RELEASE_FROM_BYTES`), which on a SmolLM2 GRPO run took the two
processes' peak from 17.0 GiB to 11.0 GiB, against 10.2 GiB for the run alone (``docs/performance.md``).

At most one evaluation is in flight: the runner collects it before it starts the next one, so metrics
arrive in the order of their events. Collecting does not wait for the copy to exit (the kernel takes
milliseconds to tear a large copy down): multiprocessing reaps the copies that have exited at the next
start, and ``close`` waits for the rest. A copy that raises sends the exception, which the parent raises again
(caused by a :class:`BackgroundEvaluationFailed` that holds the copy's traceback, raised alone when the
exception does not pickle); a copy that dies without a word (killed, out of memory) is reported with
its exit code.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from experiments.peak_memory import freed_but_kept_bytes, release_freed_memory


class BackgroundEvaluationFailed(RuntimeError):
    """An evaluation in the forked copy raised or died; the message says which and how."""


@dataclass
class _InFlight:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    label: Any


#: Freed memory the C allocator keeps from which it is handed back before a fork. A SmolLM2 GRPO step left
#: 7.4 GiB there at the fork after it, which the copy would pin while the run wrote it again; the builtin
#: base's steps leave ~30-55 MiB, where handing it back only made the run's next allocations fault pages in
#: (its runs took longer beside their copies).
RELEASE_FROM_BYTES = 256 * 2**20

#: Set for local workers (``experiments.sweep.processes``): how many run on this machine's cores at once.
LOCAL_WORKERS_VARIABLE = "HARNESS_LOCAL_WORKERS"


def available() -> bool:
    """Whether this platform can fork (Linux, macOS); elsewhere the runner evaluates in place."""
    return "fork" in multiprocessing.get_all_start_methods()


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a Slurm job's ``--cpus-per-task``, a taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def a_core_to_spare(threads: int, cores: int | None = None, workers: int | None = None) -> bool:
    """Whether a forked copy running ``threads`` torch threads beside a run of as many has cores of its
    own: every local worker (``workers``, default :data:`LOCAL_WORKERS_VARIABLE` or 1) with its copy fits
    in ``cores`` (default :func:`usable_cores`). One thread on this 2-core machine: yes; two threads,
    or two grid workers: no (the copy's threads would spin against the training's)."""
    cores = usable_cores() if cores is None else cores
    workers = int(os.environ.get(LOCAL_WORKERS_VARIABLE, "1")) if workers is None else workers
    return available() and workers * 2 * threads <= cores


class BackgroundEvaluation:
    """At most one call of a function in a forked copy of this process, and its result.

    ``start(measure, label)`` forks; the copy calls ``measure()`` and sends back what it returns (a
    picklable value) and exits. ``ready()`` says whether the result is there without waiting;
    ``collect()`` waits for it and returns ``(label, result)``. ``close()`` stops a copy whose result is
    no longer wanted (the run failed or was interrupted).
    """

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("fork")
        self._in_flight: _InFlight | None = None
        self._done: list[multiprocessing.process.BaseProcess] = []  # answered or stopped: close() joins them

    @property
    def pending(self) -> bool:
        return self._in_flight is not None

    def start(self, measure: Callable[[], Any], label: Any = None) -> None:
        if self._in_flight is not None:
            raise RuntimeError("an evaluation is still in flight: collect() it before starting another")
        # memory the run freed but its allocator kept would stay mapped in the copy too, and the run's next
        # allocations would write it and duplicate it page by page: hand it back first, when there is much
        kept = freed_but_kept_bytes()
        if kept is None or kept >= RELEASE_FROM_BYTES:
            release_freed_memory()
        receiving, sending = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_measure_and_send,
            args=(measure, sending, receiving),
            name="background-evaluation",
            daemon=True,
        )
        with warnings.catch_warnings():
            # Python 3.12+ warns on any fork of a process with threads (a progress bar's monitor); the copy
            # takes no lock another thread may hold: it computes with torch, which re-arms its own pools at
            # a fork, and writes only to its pipe
            warnings.filterwarnings(
                "ignore", message=".*use of fork\\(\\) may lead to deadlocks", category=DeprecationWarning
            )
            try:
                process.start()  # multiprocessing flushes stdout and stderr before it forks
            except BaseException:  # no copy (fork refused: out of memory, too many processes)
                receiving.close()
                sending.close()
                raise
        sending.close()  # the copy holds the only sending end: its death ends the pipe
        self._in_flight = _InFlight(process, receiving, label)

    def ready(self) -> bool:
        """Whether the evaluation in flight has answered (or died): ``collect`` would not wait."""
        return self._in_flight is not None and self._in_flight.connection.poll()

    def collect(self) -> tuple[Any, Any]:
        """Wait for the evaluation in flight; its ``(label, result)``. Raises what the evaluation raised,
        or :class:`BackgroundEvaluationFailed` when it died. Interrupted while waiting (Ctrl-C), the copy is
        stopped before the interrupt goes on."""
        if self._in_flight is None:
            raise RuntimeError("no evaluation in flight")
        flight = self._in_flight
        try:
            status, payload = flight.connection.recv()
        except EOFError:
            self._in_flight = None
            flight.connection.close()
            flight.process.join()
            raise BackgroundEvaluationFailed(
                f"the evaluation at {flight.label} died with exit code {flight.process.exitcode} "
                "before it answered (out of memory? set evaluation.background=false to evaluate in place)"
            ) from None
        except BaseException:
            self.close()
            raise
        self._in_flight = None
        flight.connection.close()
        self._done.append(flight.process)  # it has answered; its exit is not the run's wait
        if status == "error":
            pickled, details = payload
            copy = BackgroundEvaluationFailed(
                f"the evaluation at {flight.label} raised in the copy:\n{details}"
            )
            try:
                error = pickle.loads(pickled) if pickled is not None else None
            except Exception:  # an exception that pickles but does not unpickle (several __init__ arguments)
                error = None
            if error is None:
                raise copy
            raise error from copy
        return flight.label, payload

    def close(self) -> None:
        """Stop the evaluation in flight, if any, without its result, and reap every copy."""
        if self._in_flight is not None:
            flight, self._in_flight = self._in_flight, None
            flight.connection.close()
            if flight.process.is_alive():
                flight.process.terminate()
            self._done.append(flight.process)
        for process in self._done:
            process.join()
        self._done.clear()


def _measure_and_send(measure: Callable[[], Any], sending: Connection, receiving: Connection) -> None:
    """The forked copy's whole life: measure, send the result or the exception, return (and exit).

    The copy leaves interrupts to the run: Ctrl-C reaches the whole process group, and the run then stops
    the copy (``close``: SIGTERM, which ends it at once). It closes its inherited receiving end, so that a
    run that died unannounced leaves it writing into a pipe nobody reads, which ends it too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    receiving.close()
    try:
        sending.send(("ok", measure()))
    except BaseException as error:  # everything goes back to the parent, which raises it
        details = traceback.format_exc()
        try:
            pickled = pickle.dumps(error)
        except Exception:  # the exception does not pickle: its text does
            pickled = None
        sending.send(("error", (pickled, details)))
    sending.close()
