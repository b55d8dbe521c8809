"""The report's numeric tables, one row per comparison group (paradigm, algorithm, variant).

Every cell is an IQM over the group's finished runs with a 95% stratified-bootstrap CI and its n
(see analysis/aggregate.py). Column names of the numeric tables are ``<key>.iqm``,
``<key>.ci_low``, ``<key>.ci_high`` and ``<key>.n`` after ``paradigm, algorithm, variant, group,
runs``; the ``key`` of each column is listed in :data:`MAIN_COLUMNS`, :data:`LEARNING_COLUMNS`
and :data:`CONTINUAL_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import continual
from analysis.aggregate import group_summaries
from analysis.names import (
    FORMAT_COMPLIANCE,
    HIGHER,
    INFERENCE_FLOPS,
    INSTRUCTION_FORGETTING,
    LOWER,
    NOTE_EMBEDDING_FLOPS,
    PARAM_PREFIX,
    PERSONAL_ACCURACY,
    REFLECTION_FLOPS,
    RETRIEVAL_EMBEDDING_FLOPS,
    SEARCH_CALLS_PER_QUERY,
    STORAGE_BYTES,
    TOTAL_FLOPS,
    TRAIN_FLOPS,
    UPDATING_ACCURACY,
    WALL_SECONDS,
)
from analysis.runs import (
    GROUP_COLUMNS,
    curves,
    final_values,
    forgetting_values,
    group_members,
    notes_forgetting_values,
    ordered_groups,
    question_curves,
)
from analysis.stats import DEFAULT_BOOTSTRAP_REPS, area_under_curve, feedback_events_to_reach

TARGET_ACCURACY = 0.8


@dataclass(frozen=True)
class Column:
    """One summarized quantity: its key in CSV headers, its display label, direction and format."""

    key: str
    label: str
    direction: str
    fmt: str


MAIN_COLUMNS = (
    Column("personal_accuracy", "Personal acc.", HIGHER, ".3f"),
    Column("forgetting", "Forgetting", LOWER, ".3f"),
    Column("search_calls_per_query", "Searches / query", LOWER, ".2f"),
    Column("format_compliance", "Format", HIGHER, ".3f"),
    Column("total_flops", "Total FLOPs", LOWER, ".3g"),
    Column("wall_seconds", "Wall s", LOWER, ".1f"),
    Column("storage_bytes", "Storage B/user", LOWER, ".3g"),
)
#: Beside forgetting, for runs that logged the instruction probe (runs before it did not): the drop in
#: obeying an explicit format request on the stream's own kinds of question, from the untouched base.
INSTRUCTION_COLUMN = Column("instruction_forgetting", "Instr. override", LOWER, ".3f")
#: In ``table.csv`` after the displayed columns (the report's table shows the total, which includes it).
TRAIN_FLOPS_COLUMN = Column("train_flops", "Train FLOPs", LOWER, ".3g")
#: Groups whose runs place notes in the prompt (memory, hybrid, oracle): forgetting, and the
#: knowledge-probe accuracy the same model loses to its notes (without minus with them, final).
NOTES_COLUMNS = (
    Column("forgetting", "Forgetting", LOWER, ".3f"),
    Column("notes_forgetting", "From notes", LOWER, ".3f"),
)
_MAIN_METRICS = {
    "personal_accuracy": PERSONAL_ACCURACY,
    "search_calls_per_query": SEARCH_CALLS_PER_QUERY,
    "format_compliance": FORMAT_COMPLIANCE,
    "train_flops": TRAIN_FLOPS,
    "total_flops": TOTAL_FLOPS,
    "wall_seconds": WALL_SECONDS,
    "storage_bytes": STORAGE_BYTES,
}
LEARNING_COLUMNS = (
    Column("auc", "AUC (mean acc.)", HIGHER, ".3f"),
    Column("events_to_target", f"Events to {TARGET_ACCURACY:g}", LOWER, ".0f"),
    Column("questions_to_target", f"Questions to {TARGET_ACCURACY:g}", LOWER, ".0f"),
)
CONTINUAL_COLUMNS = (
    Column("acc", "ACC", HIGHER, ".3f"),
    Column("bwt", "BWT", HIGHER, ".3f"),
    Column("fwt", "FWT", HIGHER, ".3f"),
    Column("updating_accuracy", "Updating acc.", HIGHER, ".3f"),
)


#: Where a group's total FLOPs go (``compute.csv``): each part's share of the mean total, and the label
#: the report shows. Answering and query embeddings make up ``cost/inference_flops``; updates,
#: reflection and note embeddings ``cost/train_flops`` (a memory's parts are its ``memory/*_flops``).
COMPUTE_PARTS = {
    "answering": "Answering",
    "query_embeddings": "Query embeddings",
    "updates": "Updates",
    "reflection": "Reflection",
    "note_embeddings": "Note embeddings",
}


#: Settings printed beside each row of the main table: summary column -> the param it shows.
SETTING_PARAMS = {
    "learning_rate": f"{PARAM_PREFIX}algorithm.learning_rate",
    "tuned_from": f"{PARAM_PREFIX}tuned_from",
}


#: The IQM trims ``int(0.25 * n)`` scores from each end: below this many runs it trims none.
IQM_TRIMS_FROM = 4


def small_group_note(summary: pd.DataFrame) -> str:
    """A caption sentence for a summary whose groups (column ``runs``) hold fewer than
    :data:`IQM_TRIMS_FROM` runs, where the IQM is the plain mean; ``""`` when none does."""
    if summary.empty or "runs" not in summary:
        return ""
    small = int((summary["runs"] < IQM_TRIMS_FROM).sum())
    if small == 0:
        return ""
    which = "every group here" if small == len(summary) else f"{small} of the {len(summary)} groups here"
    return (
        f"With fewer than {IQM_TRIMS_FROM} runs ({which}) the IQM trims nothing: it is the mean of the runs."
    )


def main_columns(summary: pd.DataFrame) -> tuple[Column, ...]:
    """The displayed columns of a :func:`comparison_table` summary: :data:`MAIN_COLUMNS`, with
    :data:`INSTRUCTION_COLUMN` after forgetting where the summary has it."""
    return _main_columns(f"{INSTRUCTION_COLUMN.key}.iqm" in summary.columns)


def _main_columns(with_instruction: bool) -> tuple[Column, ...]:
    if not with_instruction:
        return MAIN_COLUMNS
    at = [column.key for column in MAIN_COLUMNS].index("forgetting") + 1
    return (*MAIN_COLUMNS[:at], INSTRUCTION_COLUMN, *MAIN_COLUMNS[at:])


def comparison_table(
    table: pd.DataFrame, runs: pd.DataFrame, *, seed: int, reps: int = DEFAULT_BOOTSTRAP_REPS
) -> pd.DataFrame:
    """The main table: final value of each :data:`MAIN_COLUMNS` quantity per group of ``runs``.

    "Final" is the value at a run's last logged step; forgetting is ``eval/forgetting`` (the untouched
    base's knowledge-probe accuracy minus the final one) and, where any run logged it, instruction
    override (``eval/instruction_forgetting``; :func:`main_columns`). After ``runs`` come the group's
    :data:`SETTING_PARAMS` (its learning rate, and where it was tuned: ``""`` when none);
    :data:`TRAIN_FLOPS_COLUMN` comes last (in ``table.csv``, not in the displayed table).
    """
    values = {key: final_values(table, metric) for key, metric in _MAIN_METRICS.items()}
    values["forgetting"] = forgetting_values(table)
    values[INSTRUCTION_COLUMN.key] = final_values(table, INSTRUCTION_FORGETTING)
    shown = _main_columns(with_instruction=not values[INSTRUCTION_COLUMN.key].empty)
    ordered = {column.key: values[column.key] for column in (*shown, TRAIN_FLOPS_COLUMN)}
    summary = group_summaries(runs, ordered, seed, reps)
    for offset, (name, param) in enumerate(SETTING_PARAMS.items()):
        summary.insert(
            summary.columns.get_loc("runs") + 1 + offset, name, _group_setting(runs, summary, param)
        )
    return summary


def compute_table(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Where each group's compute goes: its mean final ``cost/total_flops`` over ``runs`` and each of
    :data:`COMPUTE_PARTS` as a share of it (means over the runs, so the shares add up to 1).

    A run without a memory logs no ``memory/*_flops``: its reflection and embeddings are 0, its
    updates all of ``cost/train_flops``, its answering all of ``cost/inference_flops``.
    Columns: ``paradigm, algorithm, variant, group, runs, total_flops`` then ``<part>_share`` per part.
    """
    finals = {
        name: final_values(table, metric)
        for name, metric in (
            ("total", TOTAL_FLOPS),
            ("train", TRAIN_FLOPS),
            ("inference", INFERENCE_FLOPS),
            ("reflection", REFLECTION_FLOPS),
            ("note_embeddings", NOTE_EMBEDDING_FLOPS),
            ("query_embeddings", RETRIEVAL_EMBEDDING_FLOPS),
        )
    }
    logged = runs[runs["run_id"].isin(finals["total"].index)]
    rows = []
    for key in ordered_groups(logged):
        members = group_members(logged, key)
        ids = members["run_id"]

        def mean(name: str, ids: pd.Series = ids) -> float:
            return float(finals[name].reindex(ids).fillna(0.0).mean())

        parts = {
            "query_embeddings": mean("query_embeddings"),
            "reflection": mean("reflection"),
            "note_embeddings": mean("note_embeddings"),
        }
        parts["answering"] = mean("inference") - parts["query_embeddings"]
        parts["updates"] = mean("train") - parts["reflection"] - parts["note_embeddings"]
        total = mean("total")
        row: dict[str, object] = dict(zip(GROUP_COLUMNS, key, strict=True))
        row.update(group=members["group"].iloc[0], runs=len(members), total_flops=total)
        row.update(
            {f"{part}_share": parts[part] / total if total else float("nan") for part in COMPUTE_PARTS}
        )
        rows.append(row)
    columns = [*GROUP_COLUMNS, "group", "runs", "total_flops", *(f"{p}_share" for p in COMPUTE_PARTS)]
    return pd.DataFrame(rows, columns=columns)


def notes_table(
    table: pd.DataFrame, runs: pd.DataFrame, *, seed: int, reps: int = DEFAULT_BOOTSTRAP_REPS
) -> pd.DataFrame | None:
    """Forgetting and the part of it the notes cause, per group whose runs place notes in the prompt
    (:data:`NOTES_COLUMNS`), or None when no run logged ``eval/general_accuracy_without_notes``."""
    notes = notes_forgetting_values(table)
    if notes.empty:
        return None
    with_notes = runs[runs["run_id"].isin(notes.index)]
    return group_summaries(
        with_notes, {"forgetting": forgetting_values(table), "notes_forgetting": notes}, seed, reps
    )


def _group_setting(runs: pd.DataFrame, summary: pd.DataFrame, param: str) -> list[str]:
    """The one value of ``param`` each summary row's runs share (``""`` if none logged it, ``mixed``)."""
    if param not in runs.columns:
        return [""] * len(summary)
    shown = []
    for _, row in summary.iterrows():
        members = group_members(runs, row[GROUP_COLUMNS])
        seen = sorted({str(v) for v in members[param] if pd.notna(v) and str(v) not in ("", "nan", "None")})
        shown.append(seen[0] if len(seen) == 1 else ("mixed" if seen else ""))
    return shown


def learning_table(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    seed: int,
    reps: int = DEFAULT_BOOTSTRAP_REPS,
    target: float = TARGET_ACCURACY,
) -> pd.DataFrame:
    """Sample efficiency per group: area under the personal-accuracy curve and events to ``target``.

    ``auc`` is the normalized area (the curve's mean accuracy over the run, runs with two or more
    evaluations); ``events_to_target`` summarizes only the runs that reached ``target`` (the first
    evaluation at or above it), and ``reached`` counts them; ``questions_to_target`` is the same first
    evaluation counted in user questions (``cost/user_questions``; runs that did not log it are absent).
    """
    auc, events, questions = {}, {}, {}
    for run_id, points in curves(table, PERSONAL_ACCURACY).groupby("run_id", sort=True):
        x, y = points["step"].to_numpy(float), points["value"].to_numpy(float)
        if len(x) >= 2:
            auc[run_id] = area_under_curve(x, y, normalize=True)
        events[run_id] = feedback_events_to_reach(x, y, target)
    for run_id, points in question_curves(table, PERSONAL_ACCURACY).groupby("run_id", sort=True):
        questions[run_id] = feedback_events_to_reach(
            points["step"].to_numpy(float), points["value"].to_numpy(float), target
        )
    events_series = pd.Series(events, dtype="float64")
    summary = group_summaries(
        runs,
        {
            "auc": pd.Series(auc, dtype="float64"),
            "events_to_target": events_series,
            "questions_to_target": pd.Series(questions, dtype="float64"),
        },
        seed,
        reps,
    )
    # events_to_target is finite exactly for the runs that reached the target
    summary.insert(summary.columns.get_loc("events_to_target.iqm"), "reached", summary["events_to_target.n"])
    return summary


def continual_table(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    seed: int,
    reps: int = DEFAULT_BOOTSTRAP_REPS,
    drift: continual.DriftSchedule | None = None,
) -> tuple[pd.DataFrame | None, list[str]]:
    """ACC, BWT and FWT per group from the drift matrices, and the final ``eval/updating_accuracy``
    (the items the user changed, against their new value), or None when no run logged phases.

    Returns the table and notes about runs whose matrix lacked the entries a metric needs. ``drift``:
    the task suites' drift phases (see ``analysis.continual``).
    """
    if not continual.has_phases(table):
        return None, []
    matrices, notes = continual.phase_matrices(table, runs, drift=drift)
    metrics, metric_notes = continual.run_metrics(
        matrices, dict(zip(runs["run_id"], runs["run_name"], strict=True))
    )
    notes = notes + metric_notes
    if metrics.empty:
        return None, notes
    with_phases = runs[runs["run_id"].isin(metrics.index)]
    values = {column.key: metrics[column.key] for column in CONTINUAL_COLUMNS if column.key in metrics}
    values["updating_accuracy"] = final_values(table, UPDATING_ACCURACY)
    return group_summaries(with_phases, values, seed, reps), notes
