"""The ``harness`` command line.

Exit status: 0 done; 2 bad input (config, file, argument), one line on stderr naming the field
and the fix; 1 a run failed (its MLflow run is marked FAILED with the reason).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
import yaml

from experiments.config import ConfigError
from experiments.signals import sigterm_as_interrupt

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


def _fail(message: str, status: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(status)


def _quiet_libraries() -> None:
    """Keep library chatter (deprecation notices, MLflow hints) out of the researcher's terminal."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

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


@app.command()
def run(
    file: Annotated[Path | None, typer.Argument(help="Experiment YAML file.")] = None,
    set_: SetOption = None,
    tracking_uri: UriOption = None,
    from_run: Annotated[
        str | None, typer.Option("--from-run", help="Re-run exactly the config a logged run used.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Run an experiment file: its base config × grid × seeds, one MLflow child run each."""
    from experiments.run import RunFailed, run_experiment

    try:
        if from_run is not None:
            if file is not None:
                raise ConfigError("pass either FILE or --from-run RUN_ID, not both")
            experiment, tracker = _experiment_from_run(from_run, set_ or [], tracking_uri)
        else:
            if file is None:
                raise ConfigError(
                    "missing FILE: pass an experiment file, e.g. harness run experiments/smoke.yaml"
                )
            from experiments.config import load_experiment
            from experiments.tracking import Tracker

            experiment = load_experiment(file, set_ or [])
            tracker = Tracker(tracking_uri)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    try:
        with sigterm_as_interrupt():
            results = run_experiment(experiment, tracker, progress=not quiet)
    except RunFailed as error:
        _fail(str(error), 1)
    except KeyboardInterrupt:
        _fail("interrupted: the running run and its parent are marked KILLED in MLflow", 130)
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


def _experiment_from_run(run_id: str, overrides: list[str], uri: str | None):
    import mlflow
    from mlflow.exceptions import MlflowException

    from experiments.config import Experiment, apply_overrides, build_run_config, parse_override
    from experiments.tracking import Tracker

    tracker = Tracker(uri)
    try:
        logged = tracker.client.get_run(run_id)
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="config.yaml", tracking_uri=tracker.uri
        )
    except (MlflowException, OSError) as error:
        raise ConfigError(
            f"--from-run {run_id}: no run with a config.yaml artifact in {tracker.uri} "
            f"({str(error).splitlines()[0]})"
        ) from None
    raw = yaml.safe_load(Path(local).read_text())
    raw = apply_overrides(raw, dict(parse_override(o) for o in overrides))
    config = build_run_config(raw)
    name = tracker.client.get_experiment(logged.info.experiment_id).name
    experiment = Experiment(name=name, base=config, grid=[], seeds=[config.seed], raw=raw)
    return experiment, tracker


@app.command()
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
    names = experiment or []
    if not names and parquet is None:
        _fail("--experiment: name the MLflow experiment to report on, e.g. --experiment comparison", 2)
    if parquet is not None and not parquet.is_file():
        _fail(f"--from-parquet: no such file {parquet}; pass a runs.parquet written by an earlier report", 2)
    _quiet_libraries()
    from analysis.report import build_report, log_report
    from experiments.tracking import tracking_uri as resolve

    uri = resolve(tracking_uri)
    target = out or Path("reports") / (names[0] if names else parquet.stem)
    try:
        result = build_report(
            names, uri if parquet is None else None, target, parquet=parquet, study=_study_for(names)
        )
    except ValueError as error:
        _fail(str(error), 2)
    if log and parquet is None:
        log_report(uri, names[0], target)
    typer.echo(f"{result.finished_runs} finished runs; {len(result.unfinished_runs)} failed or unfinished")
    typer.echo(f"report: {result.html.resolve()}")
    typer.echo(f"tables: {result.table_csv} {result.table_tex}; figures in {target / 'figures'}")
    typer.echo("open the runs with: harness ui")


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
def sweep(
    file: Annotated[Path, typer.Argument(help="Experiment YAML file with a sweep: section.")],
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes on the study.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage: a journal file (default optuna-journal/NAME.log) or an RDB URL "
            "(postgresql://... for workers on several machines).",
        ),
    ] = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="Trials that must finish (overrides sweep.n_trials).")
    ] = None,
    set_: SetOption = None,
    tracking_uri: UriOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output and no result table.")] = False,
) -> None:
    """Run the file's sweep: section as an Optuna study; the same command resumes it."""
    from experiments.sweep import SweepFailed, load_sweep, run_sweep
    from experiments.tracking import Tracker

    try:
        plan = load_sweep(file, set_ or [], n_trials=n_trials, storage=storage, workers=workers)
    except ConfigError as error:
        _fail(str(error), 2)
    _quiet_libraries()
    tracker = Tracker(tracking_uri)
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


@app.command("meta-train")
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
    from experiments.config import load_experiment
    from experiments.meta_train import meta_settings, run_meta_training
    from experiments.tracking import Tracker

    try:
        # the file's grid may point paradigm.init at the start this command is about to write
        experiment = load_experiment(file, [*(set_ or []), "grid=[]"])
        meta_settings(experiment)
    except ConfigError as error:
        _fail(str(error), 2)
    target = out or Path("meta-init") / experiment.name
    _quiet_libraries()
    tracker = Tracker(tracking_uri)
    try:
        with sigterm_as_interrupt():
            run_id, iterations = run_meta_training(experiment, target, tracker, progress=not quiet)
    except KeyboardInterrupt:
        _fail("interrupted: the meta-training run is marked KILLED in MLflow", 130)
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
def config_show(
    file: Annotated[Path, typer.Argument(help="Experiment YAML file.")], set_: SetOption = None
) -> None:
    """Print the validated, fully resolved config and the runs it expands to."""
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
    if experiment.sweep is not None:
        document["sweep"] = experiment.sweep
    typer.echo(yaml.safe_dump(document, sort_keys=False).rstrip())


@base_app.command("build")
def base_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when a cached build exists.")] = False,
    spec: Annotated[
        str,
        typer.Option("--backbone", help="builtin, builtin:tiny (seconds, for tests) or builtin:oversearch."),
    ] = "builtin",
    tracking_uri: UriOption = None,
) -> None:
    """Build (or reuse) the cached builtin base and print its competence figures."""
    from experiments.base import RECIPES, describe, ensure_base
    from experiments.tracking import Tracker

    if spec not in RECIPES:
        _fail(f"--backbone: unknown builtin base {spec!r}; known: {', '.join(RECIPES)}", 2)
    _quiet_libraries()
    ensure_base(spec, tracker=Tracker(tracking_uri), progress=True, force=force)
    typer.echo(json.dumps(describe(spec), indent=2))


@base_app.command("info")
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
    from experiments.base import RECIPES, describe

    if spec not in RECIPES:
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


@app.command()
def ui(
    tracking_uri: UriOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Start the MLflow UI on 127.0.0.1 against the same store."""
    from experiments.tracking import tracking_uri as resolve

    uri = resolve(tracking_uri)
    typer.echo(f"MLflow UI for {uri} at http://127.0.0.1:{port} (Ctrl-C to stop)")
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
        ],
    )


def main() -> None:
    """Console entry point: typer's usage errors exit 2 like every other bad input."""
    app()


if __name__ == "__main__":
    main()
