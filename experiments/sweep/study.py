"""The Optuna side of a sweep: its storage (a journal file on one machine, an RDB with heartbeats
across machines), the sampler and pruner, the study created or resumed, and its trial counts."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from experiments.config import ConfigError
from experiments.sweep.plan import JOURNAL_DIR, SweepPlan, is_rdb_url
from experiments.sweep.space import grid_values

#: Seconds an unchanged journal lock may stand before a waiting process removes it (the lock of a
#: process killed while writing the journal; a write holds it for milliseconds).
JOURNAL_LOCK_GRACE_SECONDS = 30

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def rdb_url(url: str) -> str:
    """``url`` with an installed PostgreSQL driver spelled out when it names none.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 and 2.0 to psycopg2; either may be the
    one installed (the dev extras install psycopg2-binary), so a plain URL gets the one present.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, driver in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{driver}://{rest}"
    return url


def redact(url: str) -> str:
    if not is_rdb_url(url):
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_storage(plan: SweepPlan, on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> BaseStorage:
    """The sweep's storage: a journal file (one machine) or an RDB with heartbeats (several).

    ``on_stale`` is called with each trial Optuna's heartbeat declared dead (RDB only).
    """
    return storage_at(
        plan.storage_url,
        heartbeat_interval=plan.spec.heartbeat_interval,
        grace_period=plan.spec.grace_period,
        on_stale=on_stale,
    )


def storage_at(
    url: str,
    *,
    heartbeat_interval: int,
    grace_period: int,
    on_stale: Callable[[optuna.Study, FrozenTrial], None],
) -> BaseStorage:
    """A study's storage, for a sweep or a grid: a journal file path, or an RDB URL with heartbeats.

    Raises ConfigError (one line, password hidden) when the storage cannot be opened.
    """
    if not is_rdb_url(url):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return journal_storage(url)
    for attempt in range(3):
        try:
            return RDBStorage(
                rdb_url(url),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale,
            )
        except Exception as error:  # an unreachable server or a bad URL is bad input, not a failed run
            # workers starting at once on a fresh database race to create Optuna's tables: retry
            racing = "already exists" in str(error) or "duplicate key" in str(error)
            if racing and attempt < 2:
                time.sleep(1.0 + attempt)
                continue
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, ModuleNotFoundError):
                first += "; install the database driver, e.g. pip install psycopg2-binary"
            raise ConfigError(f"--storage {redact(url)}: cannot open the storage ({first})") from None
    raise AssertionError("unreachable")


def journal_storage(path: str | Path) -> JournalStorage:
    """Optuna storage on the journal file ``path``, locked by its absolute path.

    Optuna's lock is a symlink to the journal file, and a waiting process judges a lock stale by
    the mtime it reads through that link. Given a relative path, the link dangles (it resolves
    beside itself), the mtime cannot be read, and the lock of a process killed mid-write was
    waited for forever (a grid rerun after ``kill -9`` hung); an absolute path keeps the link
    readable, so such a lock is removed after ``JOURNAL_LOCK_GRACE_SECONDS``.
    """
    absolute = str(Path(path).resolve())
    lock = JournalFileSymlinkLock(absolute, grace_period=JOURNAL_LOCK_GRACE_SECONDS)
    return JournalStorage(JournalFileBackend(absolute, lock_obj=lock))


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, for trials asked and told outside ``Study.optimize``.

    ``GridSampler.after_trial`` calls ``study.stop()`` once the grid is covered, which raises
    RuntimeError outside ``optimize`` (so ``study.tell`` of the last point would fail); stopping
    is the worker's job (it stops at ``n_trials``), so this sampler does nothing after a trial.
    """

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


def _sampler(plan: SweepPlan) -> optuna.samplers.BaseSampler:
    spec = plan.spec.sampler
    # workers must not sample in lockstep: mix the seed with this worker's host and pid
    mixed = f"{spec.seed}:{socket.gethostname()}:{os.getpid()}".encode()
    seed = int.from_bytes(hashlib.sha256(mixed).digest()[:4], "little")
    if spec.name == "grid":
        # every worker must shuffle the grid alike: Optuna gives trial k the k-th point of the
        # sampler's own order, so orders that differ between workers ran some points twice and
        # others never (seen with --workers 2: 7 trials of a 7-point grid covered 4-6 points)
        space = {key: grid_values(f"sweep.space.{key}", d) for key, d in plan.distributions.items()}
        return AskTellGridSampler(space, seed=spec.seed)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.n_startup_trials, constant_liar=True)


def _pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    spec = plan.spec.pruner
    if spec.name == "median":
        return optuna.pruners.MedianPruner(spec.n_startup_trials, spec.n_warmup_steps)
    if spec.name == "percentile":
        return optuna.pruners.PercentilePruner(spec.percentile, spec.n_startup_trials, spec.n_warmup_steps)
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=plan.experiment.base.evaluation.every, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.NopPruner()


def open_study(plan: SweepPlan, storage: BaseStorage) -> optuna.Study:
    """Create the study or load it; a resumed study must have the same objectives and base config.

    The study's objectives are named after their metrics (``study.metric_names``).
    """
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study_name,
        sampler=_sampler(plan),
        pruner=_pruner(plan),
        directions=plan.directions,
        load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    recorded = study.user_attrs.get("objectives")
    if stored != plan.directions or (recorded is not None and recorded != plan.metrics):
        raise ConfigError(
            f"sweep.objectives: study {plan.study_name!r} in {redact(plan.storage_url)} optimizes "
            f"{recorded or stored}, not {plan.metrics} {plan.directions}; set sweep.study_name to start "
            f"a new study"
        )
    base_hash = study.user_attrs.get("base_config_hash")
    if base_hash is not None and base_hash != plan.base_hash():
        raise ConfigError(
            f"sweep.study_name: study {plan.study_name!r} was started with another base config or other "
            f"seeds ({base_hash} != {plan.base_hash()}); resume with the same file and --set values, or "
            f"start a new study with --set sweep.study_name=NAME"
        )
    if base_hash is None:
        study.set_user_attr("base_config_hash", plan.base_hash())
        study.set_user_attr("objectives", plan.metrics)
    if study.metric_names != plan.metrics:  # optuna-dashboard and reports show them, not "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(plan.metrics)
    return study


@dataclass(frozen=True)
class Counts:
    """Trials of a study by what they mean for its budget."""

    finished: int  # COMPLETE or PRUNED: they count towards n_trials
    running: int
    waiting: int  # enqueued retries
    errors: int  # FAIL with an error of the run itself (not a dead worker, not surplus)


def study_counts(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    return Counts(
        finished=sum(t.state in FINISHED_STATES for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        errors=sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials),
    )


def load_study_if_any(experiment: str, journal_dir: str | Path = JOURNAL_DIR) -> optuna.Study | None:
    """The study of ``experiment``'s sweep from its default journal file, or None when there is none.

    Read only: for reports (``harness report``), which draw a sweep's Pareto front and parameter
    importances. A study stored elsewhere (another journal path, an RDB) is not looked for.
    """
    path = Path(journal_dir) / f"{experiment}.log"
    if not path.is_file():
        return None
    storage = journal_storage(path)
    try:
        return optuna.load_study(study_name=experiment, storage=storage)
    except KeyError:  # the journal holds studies under other names only
        return None


@contextlib.contextmanager
def heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Record Optuna heartbeats for ``trial_id`` while the block runs (RDB storage with heartbeats).

    Uses the storage's public ``record_heartbeat``: what ``Study.optimize`` does for its own trials.
    """
    interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a missed beat is retried; the run goes on
                storage.record_heartbeat(trial_id)
            stop.wait(interval)

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
