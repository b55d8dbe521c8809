"""Dead workers' trials, for sweeps and grids (``workers``, ``grid_workers``).

RDB storage: Optuna's own machinery. Workers send heartbeats, ``optuna.storages.fail_stale_trials``
fails a trial whose heartbeat stopped, and ``RetryHeartbeatStaleTrialCallback`` queues its retry
(:func:`on_stale`).

Journal storage: Optuna 5 has no heartbeat there, so this module keeps its own detection for the
journal only: each worker holds a lock file the kernel frees when it dies, and a RUNNING trial whose
lock is free (or whose pid is gone on this host) is failed (:func:`fail_dead_trials`) and retried
(:func:`retry_trial`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import optuna
import psutil
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from paradigms.backbone_files import exclusive_lock

#: A RUNNING trial that never recorded its worker is stale after this long (its worker died
#: between creating it and claiming it, a window of milliseconds).
UNCLAIMED_GRACE_SECONDS = 60.0


def lock_dir(storage_url: str) -> Path:
    """The folder of the worker lock files of the journal ``storage_url`` (beside it)."""
    return Path(storage_url).with_name(Path(storage_url).name + ".workers")


class WorkerLock:
    """A lock file this worker holds while it lives; the kernel frees it when the process dies."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{socket.gethostname()}-{os.getpid()}.lock"
        self._handle = open(self.path, "w")  # noqa: SIM115 (held for the worker's lifetime)
        fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._handle.close()


def lock_is_free(path: str | Path) -> bool:
    """Whether nobody holds ``path``'s lock (its worker is gone); a missing file is free."""
    try:
        handle = open(path)  # noqa: SIM115
    except FileNotFoundError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def claim(trial: optuna.Trial, lock: WorkerLock | None) -> None:
    """Record this worker on ``trial``: its lock file, its pid, then its host.

    The host comes last: a trial that shows it is fully claimed. Written the other way round, a
    trial seen between the writes (host, no pid yet) looked like a dead worker's and was failed
    while it ran (seen with two grid workers under load).
    """
    if lock is not None:
        trial.set_user_attr("worker_lock", str(lock.path.resolve()))
    trial.set_user_attr("worker_pid", os.getpid())
    trial.set_user_attr("worker_host", socket.gethostname())


def worker_is_dead(trial: FrozenTrial, now: datetime | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone, as far as this host can tell.

    A worker on another host is never judged (the RDB heartbeat does that). A trial that has not
    recorded its worker yet is given ``UNCLAIMED_GRACE_SECONDS`` to do so.
    """
    attrs = trial.user_attrs
    if "worker_host" not in attrs or not ("worker_pid" in attrs or "worker_lock" in attrs):
        started = trial.datetime_start or datetime.now(timezone.utc)
        if started.tzinfo is None:
            started = started.astimezone()  # Optuna's naive datetimes are local time
        age = ((now or datetime.now(timezone.utc)) - started).total_seconds()
        return age > UNCLAIMED_GRACE_SECONDS
    if attrs["worker_host"] != socket.gethostname():
        return False
    if attrs.get("worker_lock"):
        return lock_is_free(attrs["worker_lock"])
    return not psutil.pid_exists(int(attrs.get("worker_pid", -1)))


def on_stale(
    max_retry: int, then: Callable[[FrozenTrial], None]
) -> Callable[[optuna.Study, FrozenTrial], None]:
    """RDB storage's ``heartbeat_stale_trial_callback``: Optuna's ``RetryHeartbeatStaleTrialCallback``
    queues the stale trial again (up to ``max_retry`` times), then ``then(trial)`` closes its MLflow runs.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, trial)
        then(trial)

    return callback


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int, journal: bool) -> None:
    """Queue an interrupted trial again: the journal's :func:`retry_trial`, or, on RDB storage,
    the retry Optuna's heartbeat would have queued for it (``RetryHeartbeatStaleTrialCallback``)."""
    if journal:
        retry_trial(study, trial, max_retry)
    else:
        on_stale(max_retry, lambda _: None)(study, trial)


def retried_from(trial: FrozenTrial) -> int | None:
    """The number of the trial a retry repeats (system attr ``failed_trial``, which Optuna's retry
    callback and :func:`retry_trial` both set), or None for a first attempt."""
    return trial.system_attrs.get("failed_trial")


def retry_attrs(trial: FrozenTrial) -> tuple[dict, dict]:
    """(user attrs, system attrs) of a trial that repeats the failed ``trial``: its user attrs but
    the worker's, with ``retry_of``; the system attrs ``failed_trial`` (the first attempt) and
    ``retry_history`` (every attempt so far), as Optuna's retry callback writes them."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    system_attrs = {**trial.system_attrs, "failed_trial": history[0], "retry_history": history}
    user_attrs = {k: v for k, v in trial.user_attrs.items() if not k.startswith("worker_")}
    user_attrs["retry_of"] = history[0]
    return user_attrs, system_attrs


def retry_trial(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Journal storage: enqueue a WAITING copy of a dead worker's trial (same params, worker attrs
    dropped); False past ``max_retry``.

    Writes the system attrs Optuna's ``RetryHeartbeatStaleTrialCallback`` writes (``failed_trial``,
    ``retry_history``), but unlike it does not copy the dead worker's identity: the journal's
    detection reads that identity (:func:`worker_is_dead`), and a retry carrying it would look
    stale the moment it is popped. RDB storage uses Optuna's callback itself (:func:`on_stale`).
    """
    user_attrs, system_attrs = retry_attrs(trial)
    if len(system_attrs["retry_history"]) > max_retry:
        return False
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


def fail_dead_trials(
    study: optuna.Study,
    storage: BaseStorage,
    storage_url: str,
    max_retry: int,
    on_dead: Callable[[FrozenTrial], None],
) -> list[int]:
    """Journal storage: fail each RUNNING trial whose worker is dead, enqueue its retry, call ``on_dead``.

    One process at a time (a lock file beside the journal), so a dead trial is retried once.
    Returns the numbers of the trials it failed.
    """
    recovered = []
    with exclusive_lock(Path(storage_url + ".recover.lock")):
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not worker_is_dead(trial):
                continue
            try:
                if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            retry_trial(study, trial, max_retry)
            on_dead(trial)
            if trial.user_attrs.get("worker_lock"):
                with contextlib.suppress(OSError):
                    Path(trial.user_attrs["worker_lock"]).unlink()
            recovered.append(trial.number)
    return recovered
