"""The report's figures, each from the tidy table (see analysis/load.py) of finished runs.

Every figure function takes the tidy table, the directory to write into and options, writes
``<out_dir>/<name>.png`` and ``<out_dir>/<name>.pdf`` and returns a :class:`FigureResult` with
both paths. When its data is absent (no drift runs, no search-cost grid, no study...) it writes
nothing and returns a result whose ``skipped`` says why; it never raises for missing data.
Aggregates across seeds are IQMs with 95% stratified-bootstrap intervals from analysis/stats.py.

Figures (name: content):

- ``learning_curves``: personal accuracy against feedback events, per group, with CI bands;
- ``learning_vs_forgetting``: final personal accuracy against final general-probe forgetting,
  one point per run, group means with CIs as error bars;
- ``accuracy_vs_compute``: final personal accuracy against train FLOPs and wall seconds, one
  point per run, with the Pareto front (least cost, most accuracy);
- ``search_calls``: search calls per query over feedback events for each search-cost weight;
- ``reward_decomposition``: mean of each ``train/reward/<component>`` × its weight, per group;
- ``forgetting_vs_kl``: final forgetting against final KL to the base, one point per run;
- ``phase_heatmap``: the drift matrix R averaged over seeds, per group;
- ``sweep_pareto`` and ``sweep_importances``: an Optuna study's Pareto front and fANOVA
  parameter importances (see analysis/sweep_figures.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from analysis import continual
from analysis.aggregate import scores_matrix, summarize
from analysis.names import (
    FORGETTING,
    KL_TO_BASE,
    PARAM_PREFIX,
    PERSONAL_ACCURACY,
    REWARD_COMPONENTS,
    SEARCH_CALLS_PER_QUERY,
    TRAIN_FLOPS,
    TRAIN_REWARD_PREFIX,
    WALL_SECONDS,
    reward_metric,
)
from analysis.runs import (
    GROUP_COLUMNS,
    curves,
    final_values,
    finished,
    forgetting_values,
    group_label,
    ordered_groups,
    run_table,
    sort_runs,
)
from analysis.stats import DEFAULT_BOOTSTRAP_REPS, mean_score, stratified_bootstrap_ci
from analysis.style import MARKERS, FigureResult, new_figure, paradigm_palette, save_figure
from analysis.sweep_figures import sweep_importances, sweep_pareto

__all__ = [
    "FigureResult",
    "accuracy_vs_compute",
    "forgetting_vs_kl",
    "learning_curves",
    "learning_vs_forgetting",
    "make_figures",
    "pareto_front",
    "phase_heatmap",
    "reward_decomposition",
    "search_calls",
    "sweep_importances",
    "sweep_pareto",
]

SEARCH_COST_PARAM = f"{PARAM_PREFIX}reward.weights.search_cost"
_DASHES = ("", (4, 2), (1, 1.5), (5, 1.5, 1, 1.5))
_RUN_KEYS = ["run_id", "run_name", "task", "seed", *GROUP_COLUMNS, "group"]


# --------------------------------------------------------------------------- helpers


def _skip(name: str, reason: str) -> FigureResult:
    return FigureResult(name, skipped=reason)


def _finished_runs(table: pd.DataFrame) -> pd.DataFrame:
    return finished(run_table(table))


def _group_styles(runs: pd.DataFrame) -> dict[str, tuple[tuple, int]]:
    """Group label → (its paradigm's color, the group's index among that paradigm's groups)."""
    palette = paradigm_palette(runs["paradigm"])
    styles, seen = {}, {}
    for paradigm, algorithm, variant in ordered_groups(runs):
        index = seen[paradigm] = seen.get(paradigm, -1) + 1
        styles[group_label(paradigm, algorithm, variant)] = (palette[paradigm], index)
    return styles


def _per_run(runs: pd.DataFrame, **values: pd.Series) -> pd.DataFrame:
    """``runs`` with one column per keyword (a per-run series), keeping runs where all are finite."""
    frame = runs[_RUN_KEYS].copy()
    for name, series in values.items():
        frame[name] = frame["run_id"].map(series).astype("float64")
    keep = np.all(np.isfinite(frame[list(values)].to_numpy(dtype="float64")), axis=1)
    return frame[keep]


def _points(table: pd.DataFrame, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Every logged point of ``metric`` of ``runs``, with the run's identity and group columns."""
    return curves(table, metric).merge(runs[_RUN_KEYS], on="run_id", how="inner")


def _curve_summary(points: pd.DataFrame, keys: list[str], seed: int) -> pd.DataFrame:
    """IQM and 95% CI across runs at each step, per ``keys``: columns keys, step, iqm, ci_low, ci_high, n."""
    rows = []
    for key, at_step in points.groupby([*keys, "step"], sort=True):
        rows.append(
            {**dict(zip([*keys, "step"], key, strict=True)), **summarize(scores_matrix(at_step), seed)}
        )
    return pd.DataFrame(rows)


def _mean_ci(frame: pd.DataFrame, column: str, seed: int) -> tuple[float, float, float]:
    point, lower, upper = stratified_bootstrap_ci(
        scores_matrix(frame, column), mean_score, seed=seed, reps=DEFAULT_BOOTSTRAP_REPS
    )
    return point, lower, upper


def _set_cost_scale(ax: Axes, values: np.ndarray, axis: str = "x") -> None:
    """Log scale for positive costs spanning > 2 decades, symlog when zeros sit among them."""
    positive = values[values > 0]
    if positive.size == 0 or positive.max() / positive.min() <= 100:
        return
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if positive.size == values.size:
        setter("log")
    else:
        setter("symlog", linthresh=float(positive.min()))


def _scatter_runs(ax: Axes, frame: pd.DataFrame, x: str, y: str, styles: dict) -> None:
    order = [g for g in styles if g in set(frame["group"])]
    sns.scatterplot(
        data=frame,
        x=x,
        y=y,
        hue="group",
        hue_order=order,
        palette={g: styles[g][0] for g in order},
        style="group",
        style_order=order,
        markers={g: MARKERS[styles[g][1] % len(MARKERS)] for g in order},
        alpha=0.75,
        s=36,
        ax=ax,
    )


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Indices of the non-dominated points (least cost, most accuracy), sorted by increasing cost.

    A point is kept when no other point has at most its cost and more accuracy (ties in cost keep
    the most accurate point once).
    """
    cost_array, accuracy_array = np.asarray(cost, float), np.asarray(accuracy, float)
    order = np.lexsort((-accuracy_array, cost_array))  # cost ascending, then accuracy descending
    front, best = [], -np.inf
    for index in order:
        if accuracy_array[index] > best:
            front.append(int(index))
            best = accuracy_array[index]
    return np.array(front, dtype=int)


# --------------------------------------------------------------------------- figures


def learning_curves(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Personal accuracy against feedback events: IQM across seeds with a 95% CI band, per group."""
    name = "learning_curves"
    runs = _finished_runs(table)
    points = _points(table, runs, PERSONAL_ACCURACY)
    if points.empty:
        return _skip(name, f"no finished run logged `{PERSONAL_ACCURACY}`")
    summary = _curve_summary(points, ["group"], seed)
    styles = _group_styles(runs[runs["run_id"].isin(points["run_id"])])
    with new_figure(width=5.6, height=3.6) as (figure, axes):
        ax = axes[0, 0]
        sns.lineplot(
            data=summary,
            x="step",
            y="iqm",
            hue="group",
            hue_order=list(styles),
            palette={g: color for g, (color, _) in styles.items()},
            style="group",
            style_order=list(styles),
            dashes={g: _DASHES[i % len(_DASHES)] for g, (_, i) in styles.items()},
            markers={g: MARKERS[i % len(MARKERS)] for g, (_, i) in styles.items()},
            errorbar=None,
            ax=ax,
        )
        for group, (color, _) in styles.items():
            band = summary[summary["group"] == group]
            ax.fill_between(band["step"], band["ci_low"], band["ci_high"], color=color, alpha=0.18, lw=0)
        ax.set(xlabel="feedback events", ylabel="personal accuracy (IQM)", ylim=(-0.02, 1.02))
        ax.legend(title=None, fontsize=7, loc="best")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Personal accuracy against feedback events: IQM across seeds, shaded 95% "
        "stratified-bootstrap CI.",
    )


def learning_vs_forgetting(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Final personal accuracy against final forgetting, per run, with group means and 95% CIs."""
    name = "learning_vs_forgetting"
    runs = _finished_runs(table)
    frame = _per_run(
        runs, accuracy=final_values(table, PERSONAL_ACCURACY), forgetting=forgetting_values(table)
    )
    if frame.empty:
        return _skip(name, f"no finished run logged both `{PERSONAL_ACCURACY}` and `{FORGETTING}`")
    styles = _group_styles(frame)
    with new_figure(width=5.2, height=3.8) as (figure, axes):
        ax = axes[0, 0]
        _scatter_runs(ax, frame, "forgetting", "accuracy", styles)
        for group, (color, index) in styles.items():
            members = frame[frame["group"] == group]
            x, x_low, x_high = _mean_ci(members, "forgetting", seed)
            y, y_low, y_high = _mean_ci(members, "accuracy", seed)
            ax.errorbar(
                [x],
                [y],
                xerr=[[x - x_low], [x_high - x]],
                yerr=[[y - y_low], [y_high - y]],
                fmt=MARKERS[index % len(MARKERS)],
                color=color,
                markersize=9,
                markeredgecolor="black",
                capsize=3,
                zorder=5,
            )
        ax.set(xlabel="final forgetting (general probe, lower is better)", ylabel="final personal accuracy")
        ax.legend(title=None, fontsize=7, loc="best")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Learning versus forgetting: one small marker per run; large markers are group "
        "means with 95% stratified-bootstrap CIs.",
    )


def accuracy_vs_compute(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Final personal accuracy against train FLOPs and wall seconds, per run, with the Pareto front."""
    del seed  # no resampling: every point is one run
    name = "accuracy_vs_compute"
    runs = _finished_runs(table)
    accuracy = final_values(table, PERSONAL_ACCURACY)
    panels = [
        (metric, label, frame)
        for metric, label in ((TRAIN_FLOPS, "train FLOPs"), (WALL_SECONDS, "wall seconds"))
        if not (frame := _per_run(runs, accuracy=accuracy, cost=final_values(table, metric))).empty
    ]
    if not panels:
        return _skip(
            name, f"no finished run logged `{PERSONAL_ACCURACY}` with `{TRAIN_FLOPS}` or `{WALL_SECONDS}`"
        )
    with new_figure(1, len(panels), width=4.4, height=3.6) as (figure, axes):
        for ax, (_, label, frame) in zip(axes[0], panels, strict=True):
            styles = _group_styles(frame)
            _scatter_runs(ax, frame, "cost", "accuracy", styles)
            front = frame.iloc[pareto_front(frame["cost"], frame["accuracy"])]
            ax.plot(front["cost"], front["accuracy"], drawstyle="steps-post", color="black", lw=1, ls="--")
            ax.plot(
                front["cost"],
                front["accuracy"],
                ls="none",
                marker="o",
                ms=9,
                mfc="none",
                mec="black",
                label="Pareto front",
            )
            _set_cost_scale(ax, frame["cost"].to_numpy())
            ax.set(xlabel=f"final {label}", ylabel="final personal accuracy")
            ax.legend(title=None, fontsize=7, loc="best")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Final personal accuracy against compute, one marker per run; the dashed line is "
        "the Pareto front (no run is both cheaper and more accurate).",
    )


def search_calls(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Search calls per query over feedback events, one line per search-cost weight, per paradigm."""
    name = "search_calls"
    if SEARCH_COST_PARAM not in table.columns:
        return _skip(name, f"no run logged the param `{SEARCH_COST_PARAM[len(PARAM_PREFIX) :]}`")
    runs = _finished_runs(table)
    runs = runs.assign(weight=pd.to_numeric(runs[SEARCH_COST_PARAM], errors="coerce"))
    runs = runs[np.isfinite(runs["weight"])]
    points = _points(table, runs, SEARCH_CALLS_PER_QUERY).merge(runs[["run_id", "weight"]], on="run_id")
    if points.empty:
        return _skip(name, f"no finished run logged `{SEARCH_CALLS_PER_QUERY}` with a search-cost weight")
    points["facet"] = [
        group_label(p, a) for p, a in zip(points["paradigm"], points["algorithm"], strict=True)
    ]
    facets = list(dict.fromkeys(sort_runs(points.drop_duplicates("run_id"))["facet"]))
    weights = sorted(points["weight"].unique())
    colors = dict(zip(weights, sns.color_palette("viridis", len(weights)), strict=True))
    summary = _curve_summary(points, ["facet", "weight"], seed)
    ncols = min(3, len(facets))
    nrows = -(-len(facets) // ncols)
    with new_figure(nrows, ncols, width=3.8, height=3.0) as (figure, axes):
        for ax, facet in zip(axes.ravel(), facets, strict=False):
            for weight in weights:
                line = summary[(summary["facet"] == facet) & (summary["weight"] == weight)]
                if line.empty:
                    continue
                ax.plot(
                    line["step"], line["iqm"], color=colors[weight], marker="o", ms=3, label=f"{weight:g}"
                )
                ax.fill_between(
                    line["step"], line["ci_low"], line["ci_high"], color=colors[weight], alpha=0.18
                )
            ax.set(title=facet, xlabel="feedback events", ylabel="search calls per query (IQM)")
            ax.legend(title="search_cost weight", fontsize=7, title_fontsize=7, loc="best")
        for ax in axes.ravel()[len(facets) :]:
            ax.set_visible(False)
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Search calls per query at each evaluation, per value of `reward.weights.search_cost` "
        "(IQM across seeds, shaded 95% CI).",
    )


def reward_decomposition(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Per group, the mean over training of each reward component times its weight, as grouped bars."""
    del seed  # plain means of logged values
    name = "reward_decomposition"
    runs = _finished_runs(table)
    logged = table["metric"].dropna()
    found = sorted({m[len(TRAIN_REWARD_PREFIX) :] for m in logged if m.startswith(TRAIN_REWARD_PREFIX)})
    components = [c for c in REWARD_COMPONENTS if c in found] + [
        c for c in found if c not in REWARD_COMPONENTS
    ]
    rows, notes = [], []
    for component in components:
        weight_column = f"{PARAM_PREFIX}reward.weights.{component}"
        if weight_column not in runs.columns:
            notes.append(f"{component}: no `reward.weights.{component}` param, left out")
            continue
        means = curves(table, reward_metric(component)).groupby("run_id")["value"].mean()
        weights = pd.to_numeric(runs.set_index("run_id")[weight_column], errors="coerce")
        frame = _per_run(runs, weighted=means * weights.reindex(means.index))
        rows.append(frame.assign(component=component))
    if not rows or all(frame.empty for frame in rows):
        return _skip(name, f"no finished run logged `{TRAIN_REWARD_PREFIX}<component>` with its weight")
    data = pd.concat(rows, ignore_index=True)
    styles = _group_styles(data.drop_duplicates("run_id"))
    present = [c for c in components if c in set(data["component"])]
    with new_figure(width=max(4.5, 1.2 * len(styles) + 2), height=3.6) as (figure, axes):
        ax = axes[0, 0]
        sns.barplot(
            data=data,
            x="group",
            y="weighted",
            hue="component",
            order=list(styles),
            hue_order=present,
            palette=dict(zip(present, sns.color_palette("Set2", len(present)), strict=True)),
            estimator="mean",
            errorbar=None,
            ax=ax,
        )
        ax.axhline(0, color="black", lw=0.8)
        ax.set(xlabel="", ylabel="mean weighted reward per response")
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(title="component", fontsize=7, title_fontsize=7, loc="best")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Reward decomposition: mean over training of each `train/reward/<component>` times its "
        "weight, averaged over runs.",
        notes=tuple(notes),
    )


def forgetting_vs_kl(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Final forgetting against final KL to the base model, one point per run."""
    del seed
    name = "forgetting_vs_kl"
    runs = _finished_runs(table)
    frame = _per_run(runs, kl=final_values(table, KL_TO_BASE), forgetting=forgetting_values(table))
    if frame.empty:
        return _skip(name, f"no finished run logged both `{KL_TO_BASE}` and `{FORGETTING}`")
    styles = _group_styles(frame)
    with new_figure(width=5.0, height=3.6) as (figure, axes):
        ax = axes[0, 0]
        _scatter_runs(ax, frame, "kl", "forgetting", styles)
        ax.set(xlabel="final KL to the base model", ylabel="final forgetting (general probe)")
        ax.legend(title=None, fontsize=7, loc="best")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name, paths, caption="Forgetting against KL divergence to the base, one marker per run."
    )


def phase_heatmap(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """The drift matrix R (accuracy on phase j after training through phase i), mean over seeds, per group."""
    del seed
    name = "phase_heatmap"
    if not continual.has_phases(table):
        return _skip(name, "no run logged `eval/phase_accuracy/<i>` (no drift suite)")
    runs = _finished_runs(table)
    matrices, _ = continual.phase_matrices(table, runs)
    with_matrix = runs[runs["run_id"].isin(matrices)]
    if with_matrix.empty:
        return _skip(name, "no finished run logged `eval/phase_accuracy/<i>`")
    panels = []
    for key in ordered_groups(with_matrix):
        members = with_matrix[(with_matrix[GROUP_COLUMNS] == pd.Series(key, index=GROUP_COLUMNS)).all(axis=1)]
        by_size: dict[int, list] = {}
        for run_id in members["run_id"]:
            by_size.setdefault(matrices[run_id].accuracy.shape[0], []).append(matrices[run_id])
        for size, group_matrices in sorted(by_size.items()):
            title = f"{group_label(*key)} (n={len(group_matrices)})"
            panels.append((title if len(by_size) == 1 else f"{title}, T={size}", group_matrices))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    with new_figure(nrows, ncols, width=3.4, height=3.0) as (figure, axes):
        for index, (ax, (title, group_matrices)) in enumerate(zip(axes.ravel(), panels, strict=False)):
            mean = continual.mean_matrix(group_matrices)  # (T, T)
            sns.heatmap(
                mean,
                annot=True,
                fmt=".2f",
                vmin=0.0,
                vmax=1.0,
                cmap="viridis",
                cbar=index == len(panels) - 1,
                square=True,
                ax=ax,
            )
            ax.set(title=title, xlabel="accuracy on phase j", ylabel="trained through phase i")
        for ax in axes.ravel()[len(panels) :]:
            ax.set_visible(False)
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Accuracy on each drift phase's items (columns) after training through each phase "
        "(rows), averaged over seeds; blank cells had no evaluation.",
    )


TABLE_FIGURES = (
    learning_curves,
    learning_vs_forgetting,
    accuracy_vs_compute,
    search_calls,
    reward_decomposition,
    forgetting_vs_kl,
    phase_heatmap,
)


def make_figures(table: pd.DataFrame, out_dir: Path, *, seed: int = 0, study=None) -> list[FigureResult]:
    """Every figure, in the order above: the table's, then the study's (skipped without a study)."""
    results = [figure(table, out_dir, seed=seed) for figure in TABLE_FIGURES]
    results.append(sweep_pareto(study, out_dir))
    results.append(sweep_importances(study, out_dir, seed=seed))
    return results
