"""The report of one or more MLflow experiments: tables, figures, Markdown, HTML and LaTeX.

Entry points (``harness report --experiment NAME [--out DIR]`` calls them in this order):

- :func:`build_report` writes into ``out_dir``:

  - ``report.md`` (figures linked from ``figures/``) and ``report.html`` (self-contained: figures
    as base64 PNG data URIs, inline CSS);
  - ``table.csv`` and ``table.tex`` (booktabs): the main comparison per paradigm, algorithm and
    variant: final personal accuracy, forgetting, search calls per query, format compliance,
    train FLOPs, wall seconds and storage bytes per user, each as IQM [95% CI] with n;
  - ``learning.csv``: area under the personal-accuracy curve and feedback events to reach 0.8;
  - ``continual.csv`` (only when runs logged phase accuracies): ACC, BWT, FWT;
  - ``figures/<name>.png`` and ``.pdf`` for each figure of analysis/figures.py with data;
  - ``runs.parquet``: the tidy table the report was built from (rebuild with ``parquet=``).

- :func:`log_report` logs that directory as the artifacts of a new run named ``report``
  (tag ``kind=report``) in the experiment.

Only finished child runs (those with a ``paradigm`` tag) enter tables and figures; failed,
killed and unfinished ones are counted and listed with their ``error`` tag. Tables (CSV, LaTeX,
and the Markdown) hold no timestamps and do not depend on the order runs were logged in, so a
report rebuilt from the same runs, from the store or from the parquet export, has byte-identical
tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import tables
from analysis.continual import DriftSchedule
from analysis.document import Block, Bullets, Code, Heading, Image, Paragraph, Table, to_html, to_markdown
from analysis.figures import FigureResult, make_figures
from analysis.formats import NOT_AVAILABLE, display_table, group_cells, latex_table, write_csv
from analysis.load import CONFIGS_ATTR, load_table, save_parquet
from analysis.names import KIND_TAG, PARAM_PREFIX
from analysis.runs import finished, run_table, unfinished
from analysis.serving_figure import serving_blocks
from analysis.stats import DEFAULT_BOOTSTRAP_REPS

REPORT_RUN_NAME = "report"
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote (all paths inside ``out_dir``)."""

    out_dir: Path
    markdown: Path
    html: Path
    table_csv: Path
    table_tex: Path
    learning_csv: Path
    continual_csv: Path | None
    compute_csv: Path | None
    parquet: Path
    figures: tuple[FigureResult, ...]
    finished_runs: int
    unfinished_runs: tuple[str, ...]

    @property
    def tables(self) -> tuple[Path, ...]:
        """The files that must be byte-identical when the report is rebuilt from the same runs."""
        files = [self.table_csv, self.table_tex, self.learning_csv, self.markdown]
        optional = [path for path in (self.continual_csv, self.compute_csv) if path is not None]
        return tuple(files + optional)


def build_report(
    experiment_names: list[str],
    tracking_uri: str | None,
    out_dir: Path,
    parquet: Path | None = None,
    study=None,
    seed: int = 0,
    drift: DriftSchedule | None = None,
) -> ReportResult:
    """Build the report of ``experiment_names`` into ``out_dir`` (see the module docstring).

    Args:
        experiment_names: MLflow experiment names; with ``parquet``, the experiments to keep from
            it (empty keeps all).
        tracking_uri: the MLflow store (None: ``$HARNESS_TRACKING_URI``, else MLflow's default);
            not read when ``parquet`` is given.
        out_dir: created if needed; existing report files are overwritten.
        parquet: a tidy table exported by a previous report (``runs.parquet``) or by
            :func:`analysis.load.save_parquet`, to rebuild without the store.
        study: an ``optuna.Study`` whose Pareto front and parameter importances are drawn.
        seed: seeds every bootstrap interval and the importance evaluator.
        drift: the task suites' drift phases (``analysis.continual.DriftSchedule``; ``harness report``
            passes the harness's suites): without it, the continual-learning table and the phase
            heatmap size each run's matrix by the phases it logged, and learning curves mark no
            phase starts.

    Raises:
        ValueError: an experiment is missing from the store or the parquet file.
    """
    out_dir = Path(out_dir)
    if not experiment_names and parquet is None:
        raise ValueError("name at least one experiment (--experiment NAME) or give a parquet export")
    table = load_table(experiment_names, tracking_uri, parquet)
    names = experiment_names or sorted(table["experiment"].unique())
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet_out = save_parquet(table, out_dir / "runs.parquet")
    runs = run_table(table)
    done, failed = finished(runs), unfinished(runs)

    main = tables.comparison_table(table, done, seed=seed, reps=DEFAULT_BOOTSTRAP_REPS)
    learning = tables.learning_table(table, done, seed=seed)
    continual, continual_notes = tables.continual_table(table, done, seed=seed, drift=drift)
    main_display = display_table(main, tables.main_columns(main))
    notes = tables.notes_table(table, done, seed=seed)
    compute = tables.compute_table(table, done)
    table_csv = write_csv(main, out_dir / "table.csv")
    table_tex = out_dir / "table.tex"
    small_groups = tables.small_group_note(main)
    caption = f"IQM [95% stratified-bootstrap CI] over finished runs; n = runs per group. {small_groups}"
    table_tex.write_text(latex_table(main_display, caption.strip()), encoding="utf-8")
    learning_csv = write_csv(learning, out_dir / "learning.csv")
    compute_csv = _optional_csv(compute if len(compute) else None, out_dir / "compute.csv")
    continual_csv = _optional_csv(continual, out_dir / "continual.csv")

    for stale in sorted((out_dir / FIGURES_DIR).glob("*.p[dn][fg]")):  # figures of an earlier build
        stale.unlink()
    figures = tuple(make_figures(table, out_dir / FIGURES_DIR, seed=seed, study=study, drift=drift))
    blocks = [
        Heading(1, f"Report: {', '.join(names)}"),
        *_overview(names, runs, done, failed, seed),
        Heading(2, "Comparison"),
        Paragraph(
            "Final values (at each run's last evaluation) per paradigm, algorithm and variant: IQM over "
            "runs with a 95% stratified-bootstrap CI (strata: task suites), n = finished runs. "
            "LR is the group's learning rate; Tuned on, the budget of the study that chose it "
            "(trials x tuning users x feedback events; see the runs' `tuned_from`). "
            f"Also in `table.csv` and `table.tex`. {small_groups}".strip()
        ),
        _table_or_note(main_display),
        *_notes_blocks(notes),
        *_compute_blocks(compute),
        *_learning_blocks(learning),
        *_continual_blocks(continual, continual_notes),
        Heading(2, "Figures"),
        *_figure_blocks(figures, out_dir),
        *serving_blocks(table, done, out_dir),
        *_failed_blocks(failed),
        Heading(2, "Configuration"),
        *_config_blocks(table, runs, names),
    ]
    markdown = out_dir / "report.md"
    markdown.write_text(to_markdown(blocks, out_dir), encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(to_html(blocks, f"Report: {', '.join(names)}"), encoding="utf-8")
    return ReportResult(
        out_dir=out_dir,
        markdown=markdown,
        html=html_path,
        table_csv=table_csv,
        table_tex=table_tex,
        learning_csv=learning_csv,
        continual_csv=continual_csv,
        compute_csv=compute_csv,
        parquet=parquet_out,
        figures=figures,
        finished_runs=len(done),
        unfinished_runs=tuple(failed["run_name"]),
    )


def log_report(tracker_uri: str | None, experiment_name: str, out_dir: Path) -> str:
    """Log every file under ``out_dir`` as artifacts of a new run ``report`` (tag ``kind=report``).

    The run goes in the experiment ``experiment_name`` (created if missing) of the store at
    ``tracker_uri`` (None: ``$HARNESS_TRACKING_URI``, else ``sqlite:///mlflow.db``), written through
    ``experiments.tracking`` like every other run. Returns the new run's id. A failed upload marks
    the run FAILED (``error`` tag).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        raise ValueError(f"report directory {out_dir} is missing or empty; run build_report first")
    from experiments.tracking import Tracker  # only the report's own run needs the writer

    run = Tracker(tracker_uri).start_run(experiment_name, REPORT_RUN_NAME, tags={KIND_TAG: "report"})
    try:
        run.log_artifact(out_dir)
    except Exception as error:
        run.finish("FAILED", error=f"{type(error).__name__}: {error}")
        raise
    run.finish("FINISHED")
    return run.run_id


# --------------------------------------------------------------------------- sections


def _overview(
    names: list[str], runs: pd.DataFrame, done: pd.DataFrame, failed: pd.DataFrame, seed: int
) -> list[Block]:
    groups = done["group"].nunique()
    return [
        Paragraph(
            f"Experiments: {', '.join(f'`{n}`' for n in names)}. Runs: {len(runs)} child runs, "
            f"{len(done)} finished in {groups} group(s), {len(failed)} failed, killed or unfinished "
            f"(listed below). Bootstrap seed {seed}."
        )
    ]


def _learning_blocks(learning: pd.DataFrame) -> list[Block]:
    display = display_table(learning, tables.LEARNING_COLUMNS)
    events_label = next(c for c in display.columns if c.startswith("Events to"))
    display.insert(
        display.columns.get_loc(events_label),
        "Reached",
        [f"{int(r)}/{int(n)}" for r, n in zip(learning["reached"], learning["runs"], strict=True)],
    )
    return [
        Heading(2, "Sample efficiency"),
        Paragraph(
            "Area under the personal-accuracy curve (normalized: the curve's mean accuracy over the run) "
            f"and feedback events to first reach {tables.TARGET_ACCURACY:g} personal accuracy, over the "
            "runs that reached it (`Reached`); Questions counts the same point in user questions (a "
            "group of 8 scored responses is 8 feedback events and 1 question). IQM [95% CI]. Also in "
            "`learning.csv`."
        ),
        _table_or_note(display),
    ]


def _continual_blocks(continual: pd.DataFrame | None, notes: list[str]) -> list[Block]:
    if continual is None:
        blocks: list[Block] = [
            Heading(2, "Continual learning"),
            Paragraph("No finished run logged `eval/phase_accuracy/<i>`: no ACC, BWT or FWT."),
        ]
        return blocks + ([Bullets(tuple(notes))] if notes else [])
    blocks = [
        Heading(2, "Continual learning"),
        Paragraph(
            "GEM's metrics from the drift matrix R (accuracy on phase j's items that the user never "
            "changes later, in phase j's world, after training through phase i: the evaluation after the "
            "last batch drawn in phase i): ACC (final mean over phases), BWT (change on earlier phases; "
            "negative is forgetting), FWT (gain on a phase before training on it, against the untrained "
            "evaluation). Items the user changed are not in R: Updating acc. is the final accuracy on "
            "them against their new value. IQM [95% CI]. Also in `continual.csv`."
        ),
        Table(display_table(continual, tables.CONTINUAL_COLUMNS)),
    ]
    return blocks + ([Bullets(tuple(notes))] if notes else [])


def _notes_blocks(notes: pd.DataFrame | None) -> list[Block]:
    if notes is None:
        return []
    return [
        Paragraph(
            "Forgetting is the untouched base's knowledge-probe accuracy minus the final one. For the groups "
            "that place notes in the prompt, From notes is the part the notes cause: the same model's "
            "knowledge-probe accuracy without its notes minus with them (the rest is what its weights lost)."
        ),
        Table(display_table(notes, tables.NOTES_COLUMNS)),
    ]


def _optional_csv(frame: pd.DataFrame | None, path: Path) -> Path | None:
    """Write ``frame`` to ``path``; with no frame, remove an earlier build's file there (None)."""
    if frame is not None:
        return write_csv(frame, path)
    path.unlink(missing_ok=True)
    return None


def _compute_blocks(compute: pd.DataFrame) -> list[Block]:
    """Where each group's total FLOPs go (memory's reflection and embeddings beside the updates)."""
    if compute.empty:
        return []
    display = pd.DataFrame(
        {
            **group_cells(compute),
            "Total FLOPs": [f"{v:.2e}" for v in compute["total_flops"]],
            **{
                label: [NOT_AVAILABLE if pd.isna(v) else f"{100 * v:.1f}%" for v in compute[f"{part}_share"]]
                for part, label in tables.COMPUTE_PARTS.items()
            },
        },
        dtype="str",
    )
    return [
        Paragraph(
            "Where the compute goes: each group's mean total FLOPs (every forward pass to answer the stream, "
            "to learn and to maintain state; evaluation excluded) and each part's share of it. Answering and "
            "query embeddings (memory's retrieval) are inference; updates, reflection (the model writing "
            "memory's lessons) and note embeddings are learning. Also in `compute.csv`."
        ),
        Table(display),
    ]


def _table_or_note(display: pd.DataFrame) -> Block:
    return Table(display) if len(display) else Paragraph("No finished run to summarize.")


def _figure_blocks(figures: tuple[FigureResult, ...], out_dir: Path) -> list[Block]:
    blocks: list[Block] = []
    for figure in figures:
        blocks.append(Heading(3, figure.name))
        if figure.skipped is not None:
            blocks.append(Paragraph(f"Skipped: {figure.skipped}."))
            continue
        blocks.append(
            Image(figure.png, figure.name, f"{figure.caption} (PDF: `{FIGURES_DIR}/{figure.name}.pdf`)")
        )
        if figure.notes:
            blocks.append(Bullets(figure.notes))
    return blocks


def _failed_blocks(failed: pd.DataFrame) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Failed and killed runs"),
        Paragraph(f"{len(failed)} run(s) did not finish; they are left out of every table and figure."),
    ]
    if len(failed):
        blocks.append(
            Bullets(
                tuple(
                    f"`{row.run_name}` ({row.status}, run `{row.run_id}`): "
                    + (f"`{_one_line(row.error)}`" if row.error else "no error tag")
                    for row in failed.itertuples(index=False)
                )
            )
        )
    return blocks


def _one_line(text: str, limit: int = 1000) -> str:
    """An error tag as one line for a Markdown code span: whitespace collapsed, backticks quoted."""
    flat = " ".join(str(text).split()).replace("`", "'")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _config_blocks(table: pd.DataFrame, runs: pd.DataFrame, names: list[str]) -> list[Block]:
    configs = table.attrs.get(CONFIGS_ATTR, {})
    blocks: list[Block] = []
    for name in names:
        blocks.append(Heading(3, name))
        artifacts = configs.get(name) or []
        for artifact in artifacts:
            blocks += [Paragraph(f"From {artifact['source']}:"), Code(artifact["text"], "yaml")]
        if artifacts:
            continue
        members = runs[runs["experiment"] == name]
        if members.empty:
            blocks.append(Paragraph("No run and no parent `experiment.yaml` artifact."))
            continue
        first = members.iloc[0]
        params = {c[len(PARAM_PREFIX) :]: first[c] for c in members.columns if c.startswith(PARAM_PREFIX)}
        lines = "\n".join(f"{key}: {value}" for key, value in sorted(params.items()) if pd.notna(value))
        source = f"No parent `experiment.yaml` artifact; the params of run `{first['run_name']}`"
        blocks += [Paragraph(f"{source}:"), Code(lines, "yaml")] if lines else [Paragraph(f"{source}: none.")]
    return blocks
