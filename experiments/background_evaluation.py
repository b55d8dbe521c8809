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

A copy may also stay for the run's length (``start(..., serve=...)``): after its first answer it waits for
requests, each bringing it up to date with the run (``request``: a paradigm's weights and counters, the
run's tallies, the random states) before it evaluates again. A fork costs ~14 ms of page-table copying for
the ~450 MB an ML process holds, whatever the model: on the builtin base, 8 forks were ~4% of a GRPO
run's wall time, where sending an adapter policy's 1.6 MB takes ~2-3 ms. The runner keeps a copy only for a
paradigm that can say all an evaluation reads of what training changes
(``Paradigm.evaluation_state``) on a small backbone: a copy that stays holds the pages the run has
rewritten since it was forked, which for a 10 GB SmolLM2 run would be most of them.

At most one evaluation is in flight: the runner collects it before it starts the next one, so metrics
arrive in the order of their events. Collecting does not wait for the copy to exit (the kernel takes
milliseconds to tear a large copy down): multiprocessing reaps the copies that have exited at the next
start, and ``close`` waits for the rest. A copy that raises sends the exception, which the parent raises again
(caused by a :class:`BackgroundEvaluationFailed` that holds the copy's traceback, raised alone when the
exception does not pickle); a copy that dies without a word (killed, out of memory) is reported with
its exit code.
"""

from __future__ import annotations

import contextlib
import gc
import io
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from experiments.peak_memory import freed_but_kept_bytes, release_freed_memory


class BackgroundEvaluationFailed(RuntimeError):
    """An evaluation in the forked copy raised or died; the message says which and how."""


@dataclass
class _Copy:
    process: multiprocessing.process.BaseProcess
    answers: Connection  # the copy's results and errors
    requests: Connection | None  # what a copy that stays for the run is sent (None: it answers once)


@dataclass
class _InFlight:
    copy: _Copy
    label: Any


#: Freed memory the C allocator keeps from which it is handed back before a fork. A SmolLM2 GRPO step left
#: 7.4 GiB there at the fork after it, which the copy would pin while the run wrote it again; the builtin
#: base's steps leave ~30-55 MiB, where handing it back only made the run's next allocations fault pages in
#: (its runs took longer beside their copies).
RELEASE_FROM_BYTES = 256 * 2**20

#: What tells the copy that stays to go (a request is never empty: it is a pickle).
_DISMISSED = b""

#: How long ``close`` waits for a copy that answered, or was told to go, to exit before it stops it.
JOIN_SECONDS = 30.0

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

    ``start(measure, label)`` forks; the copy calls ``measure()``, sends back what it returns (a picklable
    value) and exits. With ``serve``, the copy stays instead (:attr:`standing`): ``request(update, label)``
    has it call ``serve(update)`` and send that back, for as many requests as the run makes. ``ready()``
    says whether the result is there without waiting; ``collect()`` waits for it and returns
    ``(label, result)``. ``close()`` stops a copy whose result is no longer wanted (the run failed or was
    interrupted) and the copy that stays.
    """

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("fork")
        self._in_flight: _InFlight | None = None
        self._standing: _Copy | None = None  # a copy that waits for requests between its answers
        self._done: list[multiprocessing.process.BaseProcess] = []  # answered or stopped: close() joins them

    @property
    def pending(self) -> bool:
        return self._in_flight is not None

    @property
    def standing(self) -> bool:
        """Whether a copy stays for requests (``start(..., serve=...)``) and has not failed or been closed."""
        return self._standing is not None

    def start(
        self, measure: Callable[[], Any], label: Any = None, serve: Callable[[Any], Any] | None = None
    ) -> None:
        """Fork a copy that answers ``measure()``; with ``serve``, one that then stays for :meth:`request`
        (replacing any that stayed before)."""
        if self._in_flight is not None:
            raise RuntimeError("an evaluation is still in flight: collect() it before starting another")
        self._dismiss_standing()
        # memory the run freed but its allocator kept would stay mapped in the copy too, and the run's next
        # allocations would write it and duplicate it page by page: hand it back first, when there is much
        kept = freed_but_kept_bytes()
        if kept is None or kept >= RELEASE_FROM_BYTES:
            release_freed_memory()
        receiving, sending = self._context.Pipe(duplex=False)
        # the requests' pipe: the copy reads one end; the run's end is closed in the copy, so that closing
        # it here (close()) or the run's death ends the copy's wait
        request_reading, request_writing = (
            self._context.Pipe(duplex=False) if serve is not None else (None, None)
        )
        process = self._context.Process(
            target=_measure_and_send,
            args=(measure, sending, receiving, serve, request_reading, request_writing),
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
                for end in (receiving, sending, request_reading, request_writing):
                    if end is not None:
                        end.close()
                raise
        sending.close()  # the copy holds the only sending end: its death ends the pipe
        if request_reading is not None:
            request_reading.close()  # the copy's end
        copy = _Copy(process, receiving, request_writing)
        self._in_flight = _InFlight(copy, label)
        if serve is not None:
            self._standing = copy

    def request(self, update: Any, label: Any = None) -> None:
        """Have the copy that stays call its ``serve(update)``. ``update`` is pickled here, its tensors'
        bytes copied (:func:`_pickled_copy`), so the caller may change what it holds at once. Raises
        ``OSError`` when that copy is gone (then none stays)."""
        if self._in_flight is not None:
            raise RuntimeError("an evaluation is still in flight: collect() it before requesting another")
        if self._standing is None:
            raise RuntimeError("no copy stays for requests: start(..., serve=...) first")
        payload = _pickled_copy(update)
        self._in_flight = _InFlight(self._standing, label)  # an interrupt while sending: close() stops it
        try:
            self._standing.requests.send_bytes(payload)
        except OSError:  # it died between two requests (killed, out of memory)
            self._in_flight = None
            self._dismiss_standing()
            raise

    def ready(self) -> bool:
        """Whether the evaluation in flight has answered (or died): ``collect`` would not wait."""
        return self._in_flight is not None and self._in_flight.copy.answers.poll()

    def collect(self) -> tuple[Any, Any]:
        """Wait for the evaluation in flight; its ``(label, result)``. Raises what the evaluation raised,
        or :class:`BackgroundEvaluationFailed` when it died. Interrupted while waiting (Ctrl-C), the copy is
        stopped before the interrupt goes on."""
        if self._in_flight is None:
            raise RuntimeError("no evaluation in flight")
        flight = self._in_flight
        try:
            status, payload = flight.copy.answers.recv()
        except EOFError:
            self._in_flight = None
            self._retire(flight.copy)
            flight.copy.process.join()
            raise BackgroundEvaluationFailed(
                f"the evaluation at {flight.label} died with exit code {flight.copy.process.exitcode} "
                "before it answered (out of memory? set evaluation.background=false to evaluate in place)"
            ) from None
        except BaseException:
            self.close()
            raise
        self._in_flight = None
        if flight.copy is not self._standing or status == "error":  # a copy that raised has ended
            self._retire(flight.copy)  # it has answered; its exit is not the run's wait
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
        """Stop the evaluation in flight, if any, without its result, dismiss the copy that stays, and reap
        every copy."""
        if self._in_flight is not None:
            flight, self._in_flight = self._in_flight, None
            if flight.copy.process.is_alive():
                flight.copy.process.terminate()
            self._retire(flight.copy)
        self._dismiss_standing()
        for process in self._done:
            process.join(timeout=JOIN_SECONDS)
            if process.is_alive():  # (not seen: a copy answered or was told to go, or was stopped)
                process.terminate()
                process.join()
        self._done.clear()

    def _dismiss_standing(self) -> None:
        """Let the copy that stays go: it is told to (an empty request) and exits; its requests' pipe
        ending does too."""
        if self._standing is not None:
            with contextlib.suppress(OSError):  # (it is gone already)
                self._standing.requests.send_bytes(_DISMISSED)
            self._retire(self._standing)

    def _retire(self, copy: _Copy) -> None:
        """Close the run's ends of ``copy``'s pipes and leave its process to :meth:`close` to reap."""
        copy.answers.close()
        if copy.requests is not None:
            copy.requests.close()
        if copy is self._standing:
            self._standing = None
        if copy.process not in self._done:
            self._done.append(copy.process)


class _CopyingPickler(pickle.Pickler):
    """Pickles a dense torch tensor as a copy of its bytes, with its dtype and shape. ``Connection.send``'s
    pickler (torch's reductions) would move its storage to shared memory and send a handle, so a copy would
    read what the run writes after sending; plain ``pickle`` copies too, but through a ``torch.save`` per
    storage: 2.3 ms for an ``adapter`` policy's 49 tensors (1.6 MB) on the builtin base, against 0.6 ms."""

    def reducer_override(self, obj: Any) -> Any:
        torch = sys.modules.get("torch")  # (no tensor without it; this module does not import it)
        if torch is None or not isinstance(obj, torch.Tensor) or obj.layout != torch.strided:
            return NotImplemented
        tensor = obj.detach().cpu().contiguous()
        as_bytes = tensor.reshape(-1).view(torch.uint8).numpy()  # (a view: pickling copies it)
        return _tensor_from_bytes, (as_bytes, tensor.dtype, tuple(tensor.shape))


def _tensor_from_bytes(as_bytes: Any, dtype: Any, shape: tuple[int, ...]) -> Any:
    import torch

    return torch.from_numpy(as_bytes).view(dtype).reshape(shape)


def _pickled_copy(value: Any) -> bytes:
    """``value`` pickled, every tensor in it copied as it is now (:class:`_CopyingPickler`)."""
    buffer = io.BytesIO()
    _CopyingPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _measure_and_send(
    measure: Callable[[], Any],
    sending: Connection,
    receiving: Connection,
    serve: Callable[[Any], Any] | None = None,
    requests: Connection | None = None,
    run_end: Connection | None = None,
) -> None:
    """The forked copy's whole life: measure, send the result or the exception; with ``serve``, then answer
    ``serve(update)`` for each update read from ``requests`` until the run dismisses it (an empty request)
    or that pipe ends; return (and exit).

    The copy leaves interrupts to the run: Ctrl-C reaches the whole process group, and the run then stops
    the copy (``close``: SIGTERM, which ends it at once). It closes its inherited receiving end of the
    answers and the run's end of the requests, so that a run that died unannounced leaves it writing into a
    pipe nobody reads, or waiting on one nobody writes, which ends it too. A copy that raised ends: what it
    holds may be half-updated."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # the collector skips what the copy holds of the run: a full collection would walk it, ~0.4 s in a grid's
    # process, and write every page it is on (copies of pages the two processes shared until then)
    gc.freeze()
    receiving.close()
    if run_end is not None:
        run_end.close()
    answered = _answer(measure, sending)
    while answered and serve is not None and requests is not None:
        try:
            payload = requests.recv_bytes()
        except (EOFError, OSError):  # the run is done with this copy (or died, or was cut off mid-request)
            break
        if payload == _DISMISSED:
            break
        answered = _answer(partial(serve, pickle.loads(payload)), sending)
    sending.close()


def _answer(measure: Callable[[], Any], sending: Connection) -> bool:
    """Send ``("ok", measure())``, or what it raised (``"error"``); whether it answered without raising."""
    try:
        sending.send(("ok", measure()))
        return True
    except BaseException as error:  # everything goes back to the parent, which raises it
        details = traceback.format_exc()
        try:
            pickled = pickle.dumps(error)
        except Exception:  # the exception does not pickle: its text does
            pickled = None
        sending.send(("error", (pickled, details)))
        return False
