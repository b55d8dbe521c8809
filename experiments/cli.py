"""The ``harness`` command line.

Exit status: 0 done; 2 bad input (config, file, argument, store), one line on stderr naming the
field and the fix, nothing written; 1 a run failed (its MLflow run is marked FAILED with the
reason); 130 interrupted (Ctrl-C or SIGTERM), saying which runs were marked KILLED.

Every input is checked before anything runs or is written: the experiment file (and the backbone
it names) by ``experiments.config``, the tracking store by ``experiments.tracking.Tracker``, the
command's own arguments here. This module imports only typer at load time, and the config check
needs no torch, transformers or FAISS, so ``harness --help`` and every exit-2 answer come in about
a second; the model stack is imported once a run is about to start.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from experiments.errors import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compare how a personal LLM assistant learns its user: memory, full RL fine-tuning, "
    "or a LoRA adapter with RL.",
)
base_app = typer.Typer(no_args_is_help=True, help="The builtin base model: build it or show its figures.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect experiment files.")
app.add_typer(base_app, name="base")
app.add_typer(config_app, name="config")

SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a field: KEY=VALUE, dotted keys.")
]
UriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db or $HARNESS_TRACKING_URI)."
    ),
]
BUILTIN_BASES = "builtin, builtin:tiny (seconds, for tests) or builtin:oversearch"


def _fail(message: str, status: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(status)


def _interruptible(command: Callable[..., Any]) -> Callable[..., Any]:
    """Ctrl-C before a command has written anything: one line and status 130, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            _fail("interrupted before anything was written", 130)

    return wrapper


def _interrupted(tracker: Any) -> None:
    """Exit 130 saying what the interrupted command closed in MLflow (nothing, if it had not started)."""
    killed = [run.name for run in getattr(tracker, "started", []) if run.status == "KILLED"]
    if killed:
        _fail(f"interrupted: marked KILLED in MLflow: {', '.join(killed)}", 130)
    _fail("interrupted before any run was logged; nothing was written to MLflow", 130)


def _quiet_libraries() -> None:
    """Keep library chatter (deprecation notices, MLflow hints) out of the researcher's terminal."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in (
        "mlflow",
        "alembic",
        "transformers",
        "trl",
        "datasets",
        "peft",
        "optuna",
        "sentence_transformers",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars on every model load


def _tracker(uri: str | None):
    """The checked store (ConfigError when it cannot be used); imports MLflow, not the model stack."""
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # a new store's migration chatter
    # MLflow logs a store's database errors (with the SQL) before raising them; the raised error is
    # what the researcher gets, as one line (Tracker) or as the run's reason
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    from experiments.tracking import Tracker

    return Tracker(uri)


@app.command()
@_interruptible
def run(
    file: Annotated[Path | None, typer.Argument(help="Experiment YAML file.")] = None,
    set_: SetOption = None,
    tracking_uri: UriOption = None,
    from_run: Annotated[
        str | None, typer.Option("--from-run", help="Re-run exactly the config a logged run used.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Local worker processes on the grid (its runs as an Optuna study)."
        ),
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Run the grid as an Optuna study in this storage: a journal file (default with "
            "--workers: optuna-journal/NAME-grid.log) or an RDB URL (postgresql://... for workers on "
            "several machines); the same command resumes it.",
        ),
    ] = None,
    queued_only: Annotated[
        bool, typer.Option("--queued-only", hidden=True, help="A local worker: run queued runs only.")
    ] = False,
) -> None:
    """Run an experiment file: its base config × grid × seeds, one MLflow child run each.

    With --workers N or --storage URL the runs are an Optuna study's trials, run by N processes here
    and by the same command on other machines; rerunning the command resumes it.
    """
    if workers > 1 or storage is not None:
        if from_run is not None:
            _fail("--from-run reruns one logged run; drop --workers and --storage", 2)
        _run_grid(file, set_ or [], tracking_uri, quiet, workers, storage, queued_only)
        return
    try:
        if from_run is not None:
            if file is not None:
                raise ConfigError("pass either FILE or --from-run RUN_ID, not both")
            tracker = _tracker(tracking_uri)
            experiment = _experiment_from_run(from_run, set_ or [], tracker)
        else:
            if file is None:
                raise ConfigError(
                    "missing FILE: pass an experiment file, e.g. harness run experiments/smoke.yaml"
                )
            from experiments.config import load_experiment

            experiment = load_experiment(file, set_ or [])
            tracker = _tracker(tracking_uri)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    from experiments.run import RunFailed, run_experiment
    from experiments.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            results = run_experiment(experiment, tracker, progress=not quiet)
    except RunFailed as error:
        _fail(str(error), 1)
    except KeyboardInterrupt:
        _interrupted(tracker)
    for result in results:
        final = result.final
        typer.echo(
            f"{result.name}: personal_accuracy={final.get('eval/personal_accuracy', float('nan')):.3f} "
            f"general_accuracy={final.get('eval/general_accuracy', float('nan')):.3f} "
            f"search_calls_per_query={final.get('eval/search_calls_per_query', float('nan')):.2f}"
        )
    typer.echo(
        f"{len(results)} runs logged to {tracker.uri} (experiment {experiment.name!r}); "
        f"view them with: harness ui"
    )
    _say_backbone_notes({config.backbone for config in experiment.runs()})


def _run_grid(
    file: Path | None,
    overrides: list[str],
    tracking_uri: str | None,
    quiet: bool,
    workers: int,
    storage: str | None,
    queued_only: bool,
) -> None:
    """``harness run`` with --workers or --storage: the grid as an Optuna study (experiments.sweep.grid)."""
    from experiments.config import load_experiment

    try:
        if file is None:
            raise ConfigError(
                "missing FILE: pass an experiment file, e.g. harness run experiments/smoke.yaml"
            )
        load_experiment(file, overrides)  # a bad file answers before Optuna loads (about a second)
        from experiments.sweep.grid import load_grid

        plan = load_grid(file, overrides, workers=workers, storage=storage)
        tracker = _tracker(tracking_uri)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    from experiments.sweep.grid_workers import GridWorker, run_grid
    from experiments.sweep.study import redact

    try:
        if queued_only:
            worker = GridWorker(plan, tracker, progress=not quiet, enqueue=False)
            worker.run()
            result = worker.result()
        else:
            result = run_grid(plan, tracker, workers=workers, progress=not quiet)
    except ConfigError as error:
        _fail(str(error), 2)
    except KeyboardInterrupt:
        _fail(
            "interrupted: the running run is marked KILLED in MLflow and queued again; resume with the "
            "same command",
            130,
        )
    if result.failed:
        _fail("; ".join(f"{row.name} failed ({row.error})" for row in result.failed), 1)
    if quiet:
        return
    for row in result.rows:
        final = row.final
        typer.echo(
            f"{row.name}: personal_accuracy={final.get('eval/personal_accuracy', float('nan')):.3f} "
            f"general_accuracy={final.get('eval/general_accuracy', float('nan')):.3f} "
            f"search_calls_per_query={final.get('eval/search_calls_per_query', float('nan')):.2f}"
        )
    typer.echo(
        f"grid study {plan.study_name!r}: {result.counts.finished}/{plan.n_runs} runs finished in "
        f"{redact(plan.storage_url)}"
    )
    typer.echo(
        f"{plan.n_runs} runs logged to {tracker.uri} (experiment {plan.experiment.name!r}); "
        f"view them with: harness ui"
    )
    _say_backbone_notes({config.backbone for config in plan.configs})


def _say_backbone_notes(backbones: set[str]) -> None:
    from experiments.backbones import backbone_note

    for spec in sorted(backbones):
        note = backbone_note(spec)
        if note:
            typer.echo(f"note: {note}")


def _experiment_from_run(run_id: str, overrides: list[str], tracker):
    """The experiment that re-runs the logged config of ``run_id`` (its ``config.yaml`` artifact)."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from experiments.config import Experiment, apply_overrides, build_run_config, parse_override

    try:
        logged = tracker.client.get_run(run_id)
        with tempfile.TemporaryDirectory(prefix="harness-from-run-") as scratch:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="config.yaml", tracking_uri=tracker.uri, dst_path=scratch
            )
            raw = yaml.safe_load(Path(local).read_text())
    except (MlflowException, OSError, yaml.YAMLError) as error:
        raise ConfigError(
            f"--from-run {run_id}: no run with a config.yaml artifact in {tracker.uri} "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--from-run {run_id}: its config.yaml is not a config mapping")
    raw = apply_overrides(raw, dict(parse_override(o) for o in overrides))
    config = build_run_config(raw)
    name = tracker.client.get_experiment(logged.info.experiment_id).name
    return Experiment(name=name, base=config, grid=[], seeds=[config.seed], raw=raw)


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be written under ``folder`` (created if missing); None when they can.

    Leaves nothing behind: folders it had to create for the check are removed again.
    """
    created = []
    try:
        for parent in [*reversed(folder.parents), folder]:
            if not parent.exists():
                parent.mkdir()
                created.append(parent)
            elif not parent.is_dir():
                return f"{parent} is a file, not a folder"
        with tempfile.TemporaryFile(dir=folder):
            pass
        return None
    except OSError as error:
        return f"cannot write there ({error.strerror or error})"
    finally:
        for path in reversed(created):
            path.rmdir()


@app.command()
@_interruptible
def report(
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", help="MLflow experiment name (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: reports/<name>).")
    ] = None,
    tracking_uri: UriOption = None,
    parquet: Annotated[
        Path | None,
        typer.Option(
            "--from-parquet", help="Rebuild from a runs.parquet export instead of the MLflow store."
        ),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log the report as a 'report' run in MLflow.")
    ] = True,
) -> None:
    """Tables and figures (Markdown, HTML, LaTeX, CSV) from an experiment's finished runs."""
    from experiments.config import SAFE_NAME

    names = experiment or []
    if not names and parquet is None:
        _fail("--experiment: name the MLflow experiment to report on, e.g. --experiment comparison", 2)
    if parquet is not None and not parquet.is_file():
        _fail(f"--from-parquet: no such file {parquet}; pass a runs.parquet written by an earlier report", 2)
    if out is None:
        default = names[0] if names else parquet.stem
        if not SAFE_NAME.fullmatch(default):
            _fail(f"--out: {default!r} is not a safe folder name for reports/NAME; pass --out DIR", 2)
        out = Path("reports") / default
    problem = _folder_problem(out)
    if problem is not None:
        _fail(f"--out {out}: {problem}; choose a folder you can write (it is created if missing)", 2)
    from experiments.tracking import check_tracking_uri, sqlite_path
    from experiments.tracking import tracking_uri as resolve

    uri = resolve(tracking_uri)
    if parquet is None:
        try:
            check_tracking_uri(uri)
        except ConfigError as error:
            _fail(str(error), 2)
        store = sqlite_path(uri)
        if store is not None and not store.is_file():
            _fail(f"no MLflow store at {store}: run an experiment first, or pass --tracking-uri", 2)
    _quiet_libraries()
    from analysis.report import build_report, log_report

    try:
        result = build_report(
            names,
            uri if parquet is None else None,
            out,
            parquet=parquet,
            study=_study_for(names),
            drift=drift_schedule(),
        )
    except ValueError as error:
        _fail(str(error), 2)
    if log and parquet is None:
        log_report(uri, names[0], out)
    typer.echo(f"{result.finished_runs} finished runs; {len(result.unfinished_runs)} failed or unfinished")
    typer.echo(f"report: {result.html.resolve()}")
    typer.echo(f"tables: {result.table_csv} {result.table_tex}; figures in {out / 'figures'}")
    typer.echo("open the runs with: harness ui")


def drift_schedule():
    """The harness's task suites' drift phases, for the report (analysis imports no task code)."""
    from analysis.continual import DriftSchedule
    from tasks.suites import SUITES, phase_at

    return DriftSchedule({name: SUITES[name].n_phases for name in SUITES.names()}, phase_at)


def _study_for(names: list[str]):
    """The Optuna study of a sweep with this experiment's name, when its default journal exists."""
    if len(names) != 1:
        return None
    try:
        from experiments.sweep import load_study_if_any
    except ImportError:
        return None
    return load_study_if_any(names[0])


@app.command()
@_interruptible
def sweep(
    file: Annotated[Path, typer.Argument(help="Experiment YAML file with a sweep: section.")],
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Local worker processes on the study.")
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage: a journal file (default optuna-journal/NAME.log) or an RDB URL "
            "(postgresql://... for workers on several machines).",
        ),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", min=1, help="Trials that must finish (overrides sweep.n_trials)."),
    ] = None,
    set_: SetOption = None,
    tracking_uri: UriOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output and no result table.")] = False,
) -> None:
    """Run the file's sweep: section as an Optuna study; the same command resumes it."""
    from experiments.sweep import SweepFailed, load_sweep, run_sweep

    try:
        plan = load_sweep(file, set_ or [], n_trials=n_trials, storage=storage, workers=workers)
        tracker = _tracker(tracking_uri)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    try:
        result = run_sweep(plan, tracker, workers=workers, progress=not quiet)
    except ConfigError as error:
        _fail(str(error), 2)
    except SweepFailed as error:
        _fail(str(error), 1)
    except KeyboardInterrupt:
        _fail(
            "interrupted: the running trial is marked FAIL and queued again, its MLflow runs KILLED; "
            "resume with the same command",
            130,
        )
    if quiet:
        return
    typer.echo(result.table())
    state = "finished" if result.finished else "still running in other workers"
    typer.echo(
        f"study {plan.study_name!r} {state}: {result.counts.finished}/{plan.n_trials} trials in "
        f"{plan.storage_url}; runs logged to {tracker.uri} (experiment {plan.experiment.name!r})"
    )


@app.command()
def tune(
    file: Annotated[Path, typer.Argument(help="Experiment YAML file with a grid and a tuning: section.")],
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes per arm's study.")] = 1,
    set_: SetOption = None,
    tracking_uri: UriOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Tune every learning arm of the file's grid on tuning users; write the tuned-values file it reads."""
    from experiments.sweep import SweepFailed
    from experiments.tuning import load_tuning, run_tuning

    try:
        plan = load_tuning(file, set_ or [], workers=workers)
    except ConfigError as error:
        _fail(str(error), 2)
    from experiments.tracking import Tracker  # MLflow only once the file is known to be good

    _quiet_libraries()
    tracker = Tracker(tracking_uri)
    try:
        out = run_tuning(plan, tracker, workers=workers, progress=not quiet)
    except ConfigError as error:
        _fail(str(error), 2)
    except (SweepFailed, RuntimeError) as error:
        _fail(str(error), 1)
    except KeyboardInterrupt:
        _fail("interrupted: the running trial is queued again; resume with the same command", 130)
    typer.echo(
        f"tuned {len(plan.arms)} arms x {plan.arms[0].plan.n_trials} trials x {len(plan.users)} tuning users "
        f"(runs in {tracker.uri}, experiment {plan.experiment_name!r}); wrote {out}"
    )
    typer.echo(f"the comparison reads it: harness run {file}")


@app.command("meta-train")
@_interruptible
def meta_train(
    file: Annotated[
        Path, typer.Argument(help="Experiment YAML file: an adapter config and a meta: section.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for the learned start (default: meta-init/<experiment name>)."),
    ] = None,
    set_: SetOption = None,
    tracking_uri: UriOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Meta-learn a LoRA adapter start across simulated users (Reptile); use it with paradigm.init=DIR."""
    from experiments.config import load_experiment, meta_settings

    try:
        # the file's grid may point paradigm.init at the start this command is about to write
        experiment = load_experiment(file, [*(set_ or []), "grid=[]"])
        meta_settings(experiment)
        target = out or Path("meta-init") / experiment.name
        problem = _folder_problem(target.parent)
        if problem is not None:
            raise ConfigError(f"--out {target}: {problem}; choose a folder you can write")
        tracker = _tracker(tracking_uri)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    from experiments.meta_train import run_meta_training
    from experiments.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            run_id, iterations = run_meta_training(experiment, target, tracker, progress=not quiet)
    except KeyboardInterrupt:
        _interrupted(tracker)
    except Exception as error:  # the MLflow run is already marked FAILED with the reason
        _fail(f"meta-training failed: {type(error).__name__}: {error}", 1)
    events = iterations[-1].events if iterations else 0
    adaptations = sum(len(i.user_seeds) for i in iterations)
    typer.echo(
        f"meta-trained start ({len(iterations)} meta-iterations, {adaptations} user adaptations, "
        f"{events} feedback events) saved to {target}; "
        f"MLflow run {run_id} in {tracker.uri}"
    )
    typer.echo(f"use it with: harness run FILE --set paradigm.name=adapter --set paradigm.init={target}")


@app.command("export-users")
def export_users(
    file: Annotated[Path, typer.Argument(help="Experiment YAML file (its suite, budget, seeds, backbone).")],
    out: Annotated[Path, typer.Option("--out", help="The JSONL file to write.")],
    set_: SetOption = None,
) -> None:
    """Write the file's simulated users (its seeds) as a user-log JSONL file for task.suite=jsonl."""
    from experiments.config import load_experiment
    from experiments.user_logs import export_simulated_users

    try:
        experiment = load_experiment(file, set_ or [])
        lines, held_out = export_simulated_users(experiment, out)
    except ConfigError as error:
        _fail(str(error), 2)
    typer.echo(
        f"wrote {lines} lines of {len(experiment.seeds)} users (seeds {experiment.seeds}) to {out}; "
        "run on it "
        f"with: --set task.suite=jsonl --set task.path={out} --set task.holdout={held_out} "
        f"--set seeds=[{','.join(str(k) for k in range(len(experiment.seeds)))}]"
    )


@app.command("convert-lamp")
def convert_lamp(
    questions: Annotated[Path, typer.Option("--questions", help="LaMP's <split>_questions.json.")],
    outputs: Annotated[Path, typer.Option("--outputs", help="LaMP's <split>_outputs.json (the golds).")],
    out: Annotated[Path, typer.Option("--out", help="The JSONL user-log file to write.")],
) -> None:
    """Convert a LaMP classification split (LaMP_2 movie tags, LaMP_3 ratings) to a user-log JSONL file."""
    from tasks.converters.lamp import LampFormatError, lamp_to_log
    from tasks.user_logs import LogError, write_log

    try:
        lines = lamp_to_log(questions, outputs)
        write_log(lines, out)
    except (LampFormatError, LogError) as error:
        _fail(str(error), 2)
    users = len({line["user"] for line in lines})
    typer.echo(
        f"wrote {len(lines)} lines of {users} users to {out}; run on it with a chat backbone: --set "
        f"task.suite=jsonl --set task.path={out} --set task.holdout=1 --set backbone=smollm2"
    )


@config_app.command("show")
@_interruptible
def config_show(
    file: Annotated[Path, typer.Argument(help="Experiment YAML file.")], set_: SetOption = None
) -> None:
    """Print the validated, fully resolved config and the runs it expands to."""
    import yaml

    from experiments.config import load_experiment

    try:
        experiment = load_experiment(file, set_ or [])
    except ConfigError as error:
        _fail(str(error), 2)
    document = {
        "name": experiment.name,
        "seeds": experiment.seeds,
        "grid": experiment.grid,
        "config": experiment.base.model_dump(mode="json", exclude={"seed"}),
        "runs": [r.run_name() for r in experiment.runs()],
    }
    if experiment.tuned is not None:
        runs = experiment.runs()
        document["tuned"] = {
            r.run_name(): {"algorithm.learning_rate": r.algorithm.learning_rate, "tuned_from": r.tuned_from}
            for r in runs
            if r.tuned_from
        }
    if experiment.sweep is not None:
        document["sweep"] = experiment.sweep
    typer.echo(yaml.safe_dump(document, sort_keys=False).rstrip())


@base_app.command("build")
@_interruptible
def base_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when a cached build exists.")] = False,
    spec: Annotated[str, typer.Option("--backbone", help=f"{BUILTIN_BASES}.")] = "builtin",
    tracking_uri: UriOption = None,
) -> None:
    """Build (or reuse) the cached builtin base and print its competence figures."""
    import json

    from experiments.base import RECIPES, describe, ensure_base

    if spec not in RECIPES:
        _fail(f"--backbone: unknown builtin base {spec!r}; known: {', '.join(RECIPES)}", 2)
    try:
        tracker = _tracker(tracking_uri)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    ensure_base(spec, tracker=tracker, progress=True, force=force)
    typer.echo(json.dumps(describe(spec), indent=2))


@base_app.command("info")
@_interruptible
def base_info(
    spec: Annotated[
        str,
        typer.Option(
            "--backbone",
            help="builtin, builtin:tiny, builtin:oversearch, smollm2, a hub id or a chat model's directory.",
        ),
    ] = "builtin",
) -> None:
    """Show a backbone's competence figures: a builtin base's recipe, cache path and figures (once built),
    or a chat model's (measured on first use, minutes, then cached)."""
    import json

    from experiments.base import RECIPES, describe

    if spec not in RECIPES:
        from experiments.backbones import backbone_problem

        problem = backbone_problem(spec)
        if problem is not None:
            _fail(f"--backbone: {problem}", 2)
        from experiments.competence import describe_backbone
        from paradigms.backbone import BackboneUnavailable

        _quiet_libraries()
        try:
            typer.echo(json.dumps(describe_backbone(spec), indent=2))
        except (BackboneUnavailable, OSError, ValueError) as error:
            _fail(f"--backbone {spec}: {error}", 2)
        return
    info = describe(spec)
    typer.echo(json.dumps(info, indent=2))
    if not info["built"]:
        typer.echo("not built yet: run `harness base build`", err=True)


def _runs_pages(uri: str, address: str) -> list[tuple[str, str]]:
    """(name, URL of its runs page) for each experiment the harness logged to ``uri``, newest first."""
    from mlflow.exceptions import MlflowException

    from experiments.tracking import SEEDS_VIEW, SHARED_VIEW_TAG, Tracker, runs_page_url

    try:
        experiments = Tracker(uri).client.search_experiments(order_by=["last_update_time DESC"])
    except (ConfigError, MlflowException, OSError):
        return []  # the server will say what is wrong with the store
    return [
        (e.name, runs_page_url(address, e.experiment_id))
        for e in experiments
        if SHARED_VIEW_TAG + SEEDS_VIEW in e.tags
    ]


#: MLflow's server runs GenAI jobs (trace scorers, periodic tasks) in ~8 helper processes unless
#: this is false; the harness logs no traces, so `harness ui` leaves it off unless it is set.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def _port_problem(port: int) -> str | None:
    """Why the UI cannot listen on 127.0.0.1:``port``; None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            return f"cannot listen on 127.0.0.1:{port} ({error.strerror or error})"
    return None


@app.command()
@_interruptible
def ui(
    tracking_uri: UriOption = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server worker processes (MLflow's default is 4; one serves one user).")
    ] = 1,
) -> None:
    """Start the MLflow UI on 127.0.0.1 against the same store, sized for one user on a small machine.

    Prints the link to each harness experiment's runs page (MLflow's Model training view, runs
    grouped by their ``group`` tag): the bare address opens MLflow 3.17's GenAI pages.
    """
    from experiments.tracking import check_tracking_uri
    from experiments.tracking import tracking_uri as resolve

    uri = resolve(tracking_uri)
    try:
        check_tracking_uri(uri)
    except ConfigError as error:
        _fail(str(error), 2)
    problem = _port_problem(port)
    if problem is not None:
        _fail(f"--port {port}: {problem}; is another UI running? pick another port with --port", 2)
    address = f"http://127.0.0.1:{port}"
    typer.echo(f"MLflow UI for {uri} at {address} (Ctrl-C to stop)")
    for name, url in _runs_pages(uri, address):
        typer.echo(f"  {name}: {url}")
    os.environ.setdefault(JOB_EXECUTION_ENV, "false")
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
    )


def _click_exceptions():
    """The click exceptions typer raises (recent typer vendors click as ``typer._click``)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main() -> None:
    """Console entry point: usage errors are one line and exit 2, like every other bad input."""
    click = _click_exceptions()
    try:
        status = app(standalone_mode=False)
    except click.NoArgsIsHelpError as error:
        typer.echo(error.format_message())
        status = 0
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx is not None else "harness"
        typer.echo(f"error: {error.format_message()} (see {command} --help)", err=True)
        status = 2
    except click.ClickException as error:
        typer.echo(f"error: {error.format_message()}", err=True)
        status = error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted before anything was written", err=True)
        status = 130
    _forget_caught_interrupts()
    sys.exit(status or 0)


def _forget_caught_interrupts() -> None:
    """Make the exit status the one asked for, even after a caught Ctrl-C or SIGTERM.

    CPython remembers a ``KeyboardInterrupt`` that passed out of code run by ``exec`` of a string
    (libraries build functions and classes that way, at import time too) even when a handler caught it
    later, and a process started as ``python -m experiments.cli`` then ends killed by SIGINT instead of
    exiting 130 (seen on a loaded machine: SIGTERM arriving during such code). Evaluating a string
    resets what it remembers.
    """
    exec("None")  # a constant string: only the interpreter's flag is touched


if __name__ == "__main__":
    main()
