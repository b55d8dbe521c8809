"""Figures of an Optuna sweep: its Pareto front and its parameter importances (matplotlib, no plotly).

Both take an ``optuna.Study`` (or None, which skips with a reason) and read only its completed
trials. Optuna is imported when a study is given, so the rest of ``analysis`` does not need it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from analysis.style import FigureResult, new_figure, save_figure


def _objective_names(study) -> list[str]:
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    return [f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True)]


def _completed(study) -> list:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def sweep_pareto(study, out_dir: Path) -> FigureResult:
    """The study's first two objectives, every completed trial, its Pareto-optimal trials joined."""
    name = "sweep_pareto"
    if study is None:
        return FigureResult(name, skipped="no Optuna study given")
    if len(study.directions) < 2:
        return FigureResult(name, skipped=f"study {study.study_name!r} has one objective: no Pareto front")
    trials = _completed(study)
    if not trials:
        return FigureResult(name, skipped=f"study {study.study_name!r} has no completed trial")
    labels = _objective_names(study)
    values = np.array([t.values[:2] for t in trials], dtype=float)  # (trials, 2)
    best = {t.number for t in study.best_trials}
    on_front = np.array([t.number in best for t in trials])
    front = values[on_front][np.argsort(values[on_front][:, 0], kind="stable")]  # (front, 2)
    with new_figure(width=4.8, height=3.8) as (figure, axes):
        ax = axes[0, 0]
        ax.scatter(values[~on_front, 0], values[~on_front, 1], color="0.6", s=18, label="trial")
        ax.scatter(front[:, 0], front[:, 1], color="C3", s=30, zorder=3, label="Pareto-optimal trial")
        ax.plot(front[:, 0], front[:, 1], color="C3", lw=1, ls="--")
        ax.set(xlabel=labels[0], ylabel=labels[1], title=study.study_name)
        ax.legend(fontsize=7, loc="best")
        paths = save_figure(figure, out_dir, name)
    extra = len(study.directions) - 2
    notes = (f"only the first 2 of {len(study.directions)} objectives are drawn",) if extra else ()
    return FigureResult(
        name,
        paths,
        caption=f"Optuna study {study.study_name}: completed trials and their Pareto front.",
        notes=notes,
    )


def sweep_importances(study, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """fANOVA importance of each parameter for each objective (``FanovaImportanceEvaluator(seed)``)."""
    name = "sweep_importances"
    if study is None:
        return FigureResult(name, skipped="no Optuna study given")
    import optuna

    labels = _objective_names(study)
    rows = []
    try:
        for index, label in enumerate(labels):
            importances = optuna.importance.get_param_importances(
                study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
                target=(lambda t, i=index: t.values[i]) if len(labels) > 1 else None,
            )
            rows += [{"param": p, "importance": v, "objective": label} for p, v in importances.items()]
    except (ValueError, RuntimeError) as error:
        return FigureResult(name, skipped=f"study {study.study_name!r}: no parameter importances ({error})")
    if not rows:
        return FigureResult(name, skipped=f"study {study.study_name!r} has no parameter that varied")
    data = pd.DataFrame(rows)
    order = (
        data[data["objective"] == labels[0]].sort_values(["importance", "param"], ascending=[False, True])[
            "param"
        ]
    ).tolist()
    order += sorted(set(data["param"]) - set(order))
    with new_figure(width=5.0, height=0.45 * len(order) + 1.6) as (figure, axes):
        ax = axes[0, 0]
        sns.barplot(
            data=data,
            y="param",
            x="importance",
            hue="objective",
            order=order,
            hue_order=labels,
            palette=dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True)),
            errorbar=None,
            orient="h",
            ax=ax,
        )
        ax.set(xlabel="fANOVA importance (normalized)", ylabel="", title=study.study_name)
        ax.legend(fontsize=7, loc="lower right")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption=f"Optuna study {study.study_name}: parameter importances (fANOVA, seed {seed}).",
    )
