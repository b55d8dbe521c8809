"""What a sweep ends with: the best trial or the Pareto front, as rows, as a table, and logged to
the parent run once the study is finished."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.trial import TrialState

from experiments.sweep.plan import SweepPlan
from experiments.sweep.study import Counts, study_counts

if TYPE_CHECKING:  # MLflow loads with the first trial, so a bad sweep file answers before it (~1 s)
    from experiments.tracking import TrackedRun


@dataclass
class SweepResult:
    """What a sweep ends with: the best trial or the Pareto front, as rows and as a table."""

    study_name: str
    finished: bool
    counts: Counts
    rows: list[dict[str, Any]]
    kind: Literal["best_trial", "pareto_front"]

    def table(self) -> str:
        """The rows as an aligned text table (trial number, objective values, params)."""
        if not self.rows:
            return f"study {self.study_name!r}: no completed trial yet"
        columns = ["trial", *[k for k in self.rows[0] if k != "trial"]]
        cells = [[_cell(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        title = "best trial" if self.kind == "best_trial" else f"Pareto front ({len(self.rows)} trials)"
        lines = [
            f"{title} of study {self.study_name!r}:",
            "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        ]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def result_rows(study: optuna.Study, metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per best trial (single objective) or Pareto-optimal trial: number, values, params."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    best = [study.best_trial] if len(metrics) == 1 else sorted(study.best_trials, key=lambda t: t.number)
    return [
        {
            "trial": t.number,
            **dict(zip(metrics, t.values, strict=True)),
            **{f"param:{k}": v for k, v in t.params.items()},
        }
        for t in best
    ]


def summarize(plan: SweepPlan, study: optuna.Study, parent: TrackedRun | None) -> SweepResult:
    """The sweep's result; when the study is done, logged to the parent run, which is then FINISHED."""
    counts = study_counts(study)
    kind: Literal["best_trial", "pareto_front"] = "best_trial" if len(plan.metrics) == 1 else "pareto_front"
    rows = result_rows(study, plan.metrics)
    done = counts.finished >= plan.n_trials and counts.running == 0
    if done and parent is not None:
        document = [
            {
                "trial": row["trial"],
                "values": {k: row[k] for k in plan.metrics},
                "params": {k.removeprefix("param:"): v for k, v in row.items() if k.startswith("param:")},
            }
            for row in rows
        ]
        parent.log_dict(document[0] if kind == "best_trial" and document else document, f"{kind}.json")
        tags: dict[str, Any] = {"n_finished": counts.finished}
        if rows:
            tags["best_trials"] = ",".join(str(row["trial"]) for row in rows)
        parent.set_tags(tags)
        parent.finish("FINISHED")
    return SweepResult(plan.study_name, done, counts, rows, kind)
