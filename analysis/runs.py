"""Per-run views of the tidy table: one row per run, its comparison group, final values and curves.

A comparison group is (paradigm, algorithm, variant). ``variant`` names the params that differ
between the configurations of one paradigm and algorithm (``reward.weights.search_cost=0.5``),
so that grid points are compared, not pooled; it is ``""`` when a paradigm and algorithm ran one
configuration. The seed and the task suite never make a variant: seeds are the replicates and
task suites are the strata of the bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.load import RUN_COLUMNS
from analysis.names import (
    BASE_GENERAL_KNOWLEDGE,
    FINISHED,
    FORGETTING,
    GENERAL_ACCURACY,
    GENERAL_ACCURACY_WITHOUT_NOTES,
    GENERAL_KNOWLEDGE,
    GENERAL_KNOWLEDGE_WITHOUT_NOTES,
    PARAM_PREFIX,
    USER_QUESTIONS,
    paradigm_rank,
)
from analysis.stats import final_forgetting

GROUP_COLUMNS = ["paradigm", "algorithm", "variant"]
_NOT_VARIANT = {f"{PARAM_PREFIX}seed", f"{PARAM_PREFIX}task.suite"}


def run_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the run columns, its ``param.*`` columns, ``variant`` and ``group`` (a label).

    Sorted by group (paradigms in the fixed order), task, seed (numerically), run name, run id.
    """
    params = [c for c in table.columns if c.startswith(PARAM_PREFIX)]
    runs = table.drop_duplicates("run_id")[[*RUN_COLUMNS, *params]].copy()
    runs["variant"] = _variants(runs, params)
    runs["group"] = [
        group_label(p, a, v)
        for p, a, v in zip(runs["paradigm"], runs["algorithm"], runs["variant"], strict=True)
    ]
    return sort_runs(runs).reset_index(drop=True)


def sort_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with the group columns, task, seed, run_name, run_id) in the canonical run order."""
    columns = [
        frame[c].tolist() for c in ("paradigm", "algorithm", "variant", "task", "seed", "run_name", "run_id")
    ]
    keys = [
        (paradigm_rank(paradigm), algorithm, variant, task, _seed_key(seed), name, run_id)
        for paradigm, algorithm, variant, task, seed, name, run_id in zip(*columns, strict=True)
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return frame.iloc[order]


def _seed_key(seed: str) -> tuple[int, float, str]:
    """Numeric seeds first, in numeric order; anything else after, by text."""
    try:
        number = float(seed)
    except (TypeError, ValueError):
        return 1, 0.0, str(seed)
    return (0, number, "") if np.isfinite(number) else (1, 0.0, str(seed))


def group_label(paradigm: str, algorithm: str, variant: str = "") -> str:
    """``paradigm``, ``paradigm/algorithm`` when it learns with an algorithm, then ``(variant)`` if any."""
    label = paradigm if algorithm in ("", "none") else f"{paradigm}/{algorithm}"
    return f"{label} ({variant})" if variant else label


def ordered_groups(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The distinct (paradigm, algorithm, variant) of ``runs`` in the canonical order."""
    keys = runs[GROUP_COLUMNS].drop_duplicates()
    return sorted(
        (tuple(row) for row in keys.itertuples(index=False)),
        key=lambda key: (paradigm_rank(key[0]), key[1], key[2]),
    )


def group_members(runs: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """The rows of ``runs`` in group ``key``: its paradigm, algorithm and variant (:data:`GROUP_COLUMNS`)."""
    return runs[(runs[GROUP_COLUMNS] == pd.Series(list(key), index=GROUP_COLUMNS)).all(axis=1)]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of finished runs (tables and figures use only these)."""
    return runs[runs["status"] == FINISHED]


def unfinished(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of failed, killed or still-running runs (reports list them)."""
    return runs[runs["status"] != FINISHED]


def final_values(table: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` at each run's last logged step, indexed by run id (runs without it are absent)."""
    rows = table[table["metric"] == metric].dropna(subset=["value"])
    rows = rows.sort_values(["run_id", "step"], kind="mergesort")
    return rows.groupby("run_id", sort=True)["value"].last().astype("float64")


def curves(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Every logged point of ``metric``: columns run_id, step (int), value, sorted by run and step."""
    rows = table.loc[table["metric"] == metric, ["run_id", "step", "value"]].dropna()
    rows = rows.astype({"step": "int64", "value": "float64"})
    return rows.sort_values(["run_id", "step"], kind="mergesort").reset_index(drop=True)


def question_curves(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric``'s curve against user questions instead of feedback events: columns run_id, step (the
    user questions answered by then, ``cost/user_questions``, int), value; only runs that logged both,
    at the steps where both were logged, sorted by run and step. (A group of 8 responses is 8 feedback
    events and one user question.)"""
    points = curves(table, metric)
    questions = curves(table, USER_QUESTIONS).rename(columns={"value": "questions"})
    joined = points.merge(questions, on=["run_id", "step"], how="inner")
    frame = pd.DataFrame(
        {"run_id": joined["run_id"], "step": joined["questions"].astype("int64"), "value": joined["value"]}
    )
    return frame.sort_values(["run_id", "step"], kind="mergesort").reset_index(drop=True)


def forgetting_label(table: pd.DataFrame) -> str:
    """What the runs' forgetting was measured on, for axis labels and captions: ``"knowledge
    forgetting"`` when every run with a forgetting value logged the knowledge probe, ``"forgetting
    (general probe)"`` when none did (runs from before the knowledge probe), and a label naming both
    for a table that mixes them."""
    measured = set(forgetting_values(table).index)
    on_knowledge = measured & set(final_values(table, GENERAL_KNOWLEDGE).index)
    if on_knowledge == measured:
        return "knowledge forgetting"
    if not on_knowledge:
        return "forgetting (general probe)"
    return "forgetting (knowledge or general probe)"


def forgetting_values(table: pd.DataFrame) -> pd.Series:
    """Final ``eval/forgetting`` per run (the untouched base's knowledge-probe accuracy minus the final one).

    A run that logged the base's knowledge but not ``eval/forgetting`` gets it computed by the same
    definition (``analysis.stats.final_forgetting``); a run with neither is absent. (Runs logged before
    the knowledge probe existed logged ``eval/forgetting`` on the general probe: README, "Forgetting".)
    """
    logged = final_values(table, FORGETTING)
    base = final_values(table, BASE_GENERAL_KNOWLEDGE)
    knowledge = curves(table, GENERAL_KNOWLEDGE)
    computed = {
        run_id: final_forgetting(points["value"].to_numpy(), base[run_id])
        for run_id, points in knowledge.groupby("run_id", sort=True)
        if run_id not in logged.index and run_id in base.index
    }
    return pd.concat([logged, pd.Series(computed, dtype="float64")]).sort_index()


def notes_forgetting_values(table: pd.DataFrame) -> pd.Series:
    """Per run that places notes in its prompts: the part of its final forgetting its notes cause.

    ``eval/general_knowledge_without_notes - eval/general_knowledge`` at the last evaluation (the same
    model answering the knowledge probe without and with its notes); for runs logged before that probe,
    the general probe's ``eval/general_accuracy_without_notes - eval/general_accuracy``, which their
    ``eval/forgetting`` was measured on. Absent for runs without notes.
    """
    parts = []
    for without_metric, with_metric in (
        (GENERAL_KNOWLEDGE_WITHOUT_NOTES, GENERAL_KNOWLEDGE),
        (GENERAL_ACCURACY_WITHOUT_NOTES, GENERAL_ACCURACY),
    ):
        without, with_notes = final_values(table, without_metric), final_values(table, with_metric)
        shared = without.index.intersection(with_notes.index)
        shared = shared.difference(*[part.index for part in parts]) if parts else shared
        parts.append((without[shared] - with_notes[shared]).astype("float64"))
    return pd.concat(parts).sort_index()


def with_values(runs: pd.DataFrame, values: pd.Series, name: str = "value") -> pd.DataFrame:
    """``runs`` joined with a per-run series (by run id), dropping runs without a finite value."""
    joined = runs.assign(**{name: runs["run_id"].map(values)})
    return joined[np.isfinite(joined[name].astype("float64"))]


def _variants(runs: pd.DataFrame, params: list[str]) -> list[str]:
    labels = pd.Series("", index=runs.index, dtype="str")
    candidates = [p for p in params if p not in _NOT_VARIANT]
    for _, members in runs.groupby(["paradigm", "algorithm"], sort=True):
        values = members[candidates].fillna("")
        differing = sorted(c for c in candidates if values[c].nunique() > 1)
        for index, row in values[differing].iterrows():
            labels[index] = ", ".join(f"{c[len(PARAM_PREFIX) :]}={row[c]}" for c in differing)
    return labels.tolist()
