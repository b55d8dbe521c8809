"""The report's figures, each from the tidy table (see analysis/load.py) of finished runs.

Every figure function takes the tidy table, the directory to write into and options, writes
``<out_dir>/<name>.png`` and ``<out_dir>/<name>.pdf`` and returns a :class:`FigureResult` with
both paths. When its data is absent (no drift runs, no search-cost grid, no study...) it writes
nothing and returns a result whose ``skipped`` says why; it never raises for missing data.
Aggregates across seeds are IQMs (curves) or means (bars, group markers) with 95%
stratified-bootstrap intervals from analysis/stats.py. Every group keeps one colour, marker and
line style in every figure (analysis/style.py); legends sit outside the data.

Figures (name: content):

- ``learning_curves``: personal accuracy against feedback events with CI bands, one panel for
  the paradigms without an RL algorithm and one per paradigm with one (the frozen floor and the
  oracle ceiling repeated thin in each), on one shared y-axis, drift phase changes marked;
- ``learning_curves_by_questions``: the same against user questions (a GRPO group of 8 is 8
  feedback events and one question), for runs that logged ``cost/user_questions``;
- ``learning_vs_forgetting``: final personal accuracy against final knowledge forgetting and, in
  a second panel, instruction override, one point per run, group means with CIs as error bars;
- ``accuracy_vs_compute``: final personal accuracy against train FLOPs and wall seconds, one
  point per run, with the Pareto front (least cost, most accuracy) drawn as its staircase;
- ``search_calls``: search calls per query over feedback events for each search-cost weight,
  one panel per paradigm and algorithm, on one shared y-axis from 0;
- ``reward_decomposition``: mean over training of each ``train/reward/<component>`` × its weight,
  per group with its 95% CI, one panel per component;
- ``forgetting_vs_kl``: final forgetting against final KL to the base, one point per run;
- ``phase_heatmap``: the drift matrix R averaged over seeds, per group;
- ``sweep_pareto`` and ``sweep_importances``: an Optuna study's Pareto front and fANOVA
  parameter importances (see analysis/sweep_figures.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from analysis import continual
from analysis.aggregate import scores_matrix, summarize
from analysis.names import (
    FORGETTING,
    INSTRUCTION_FORGETTING,
    KL_TO_BASE,
    PARAM_PREFIX,
    PERSONAL_ACCURACY,
    REWARD_COMPONENTS,
    SEARCH_CALLS_PER_QUERY,
    TOTAL_FLOPS,
    TRAIN_REWARD_PREFIX,
    USER_QUESTIONS,
    WALL_SECONDS,
    reward_metric,
)
from analysis.runs import (
    GROUP_COLUMNS,
    curves,
    final_values,
    finished,
    forgetting_label,
    forgetting_values,
    group_label,
    group_members,
    ordered_groups,
    question_curves,
    run_table,
    sort_runs,
)
from analysis.stats import DEFAULT_BOOTSTRAP_REPS, mean_score, stratified_bootstrap_ci
from analysis.style import MAX_WIDTH, FigureResult, GroupStyle, group_styles, new_figure, save_figure
from analysis.sweep_figures import sweep_importances, sweep_pareto

__all__ = [
    "FigureResult",
    "accuracy_vs_compute",
    "forgetting_vs_kl",
    "learning_curves",
    "learning_curves_by_questions",
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
#: Paradigms drawn thin in every learning-curve panel: the floor and the ceiling.
REFERENCE_PARADIGMS = ("frozen", "oracle")
LEGEND_SIZE = 7.5
_RUN_KEYS = ["run_id", "run_name", "task", "seed", *GROUP_COLUMNS, "group"]


# --------------------------------------------------------------------------- helpers


def _skip(name: str, reason: str) -> FigureResult:
    return FigureResult(name, skipped=reason)


def _finished_runs(table: pd.DataFrame) -> pd.DataFrame:
    return finished(run_table(table))


def _styles(runs: pd.DataFrame) -> dict[str, GroupStyle]:
    """Group label → its style, for the groups of ``runs`` in the canonical order."""
    keys = ordered_groups(runs)
    return group_styles(keys, [group_label(*key) for key in keys])


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


def _set_cost_scale(ax: Axes, values: np.ndarray, axis: str = "x") -> str:
    """Log scale for positive values spanning > 2 decades, symlog when zeros sit among them.

    Returns the scale set (``linear``, ``log`` or ``symlog``).
    """
    positive = values[values > 0]
    if positive.size == 0 or positive.max() / positive.min() <= 100:
        return "linear"
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if positive.size == values.size:
        setter("log")
        return "log"
    setter("symlog", linthresh=float(positive.min()))
    return "symlog"


def _handle(style: GroupStyle, line: bool = False) -> Line2D:
    """A legend entry drawn like the group: its marker, and its line when ``line``."""
    return Line2D(
        [],
        [],
        color=style.color,
        marker=style.marker,
        linestyle=style.linestyle if line else "none",
        markersize=6,
        markeredgecolor="black",
        markeredgewidth=0.4,
    )


def _legend_right(ax: Axes, styles: dict[str, GroupStyle], groups: Sequence[str], extra=()) -> None:
    """The groups' legend to the right of ``ax``, outside the data."""
    handles = [_handle(styles[g]) for g in groups] + [h for h, _ in extra]
    labels = list(groups) + [label for _, label in extra]
    ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=LEGEND_SIZE, borderaxespad=0
    )


def _scatter_runs(ax: Axes, frame: pd.DataFrame, x: str, y: str, styles: dict[str, GroupStyle]) -> None:
    """One small marker per run, in its group's colour and marker."""
    for group, style in styles.items():
        members = frame[frame["group"] == group]
        if members.empty:
            continue
        ax.scatter(
            members[x],
            members[y],
            color=style.color,
            marker=style.marker,
            s=22,
            alpha=0.55,
            linewidths=0.3,
            edgecolors="black",
            zorder=3,
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


def _draw_front(ax: Axes, cost: np.ndarray, accuracy: np.ndarray) -> None:
    """The front's staircase: the best accuracy reachable at each cost, from its cheapest point on.

    Each front point holds its accuracy until the next, dearer and more accurate one; the last
    holds it to the right edge, so a one-point front is a line too.
    """
    right = ax.get_xlim()[1]
    xs = np.append(cost, right)
    ys = np.append(accuracy, accuracy[-1])
    ax.plot(xs, ys, drawstyle="steps-post", color="black", lw=1, ls="--", zorder=2)
    ax.plot(cost, accuracy, ls="none", marker="o", ms=10, mfc="none", mec="black", zorder=4)
    ax.set_xlim(right=right)


def _phase_lines(ax: Axes, changes: list[tuple[int, int]]) -> None:
    for events, phase in changes:
        ax.axvline(events, color="0.3", ls=":", lw=0.9, zorder=1)
        ax.text(
            events,
            0.03,
            f" phase {phase} ",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color="0.3",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )


# --------------------------------------------------------------------------- figures


def _curve_panels(runs: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(title, groups) per learning-curve panel: groups without an RL algorithm, then one per paradigm."""
    keys = ordered_groups(runs)
    plain = [key for key in keys if key[1] in ("", "none")]
    panels = []
    if plain:
        paradigms = list(dict.fromkeys(key[0] for key in plain))
        panels.append(("no RL: " + ", ".join(paradigms), [group_label(*key) for key in plain]))
    for paradigm in dict.fromkeys(key[0] for key in keys if key not in plain):
        members = [group_label(*key) for key in keys if key[0] == paradigm and key not in plain]
        panels.append((paradigm, members))
    return panels


def learning_curves(
    table: pd.DataFrame, out_dir: Path, *, seed: int = 0, drift: continual.DriftSchedule | None = None
) -> FigureResult:
    """Personal accuracy against feedback events: IQM across seeds with a 95% CI band, per group; the
    drift phases' starts marked where ``drift`` knows the runs' suites."""
    runs = _finished_runs(table)
    return _learning_curves(
        "learning_curves",
        _points(table, runs, PERSONAL_ACCURACY),
        runs,
        out_dir,
        seed,
        "feedback events",
        drift,
    )


def learning_curves_by_questions(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Personal accuracy against user questions (``cost/user_questions``), as :func:`learning_curves`."""
    runs = _finished_runs(table)
    points = question_curves(table, PERSONAL_ACCURACY).merge(runs[_RUN_KEYS], on="run_id", how="inner")
    if points.empty:
        return _skip(
            "learning_curves_by_questions",
            f"no finished run logged `{PERSONAL_ACCURACY}` and `{USER_QUESTIONS}`",
        )
    return _learning_curves("learning_curves_by_questions", points, runs, out_dir, seed, "user questions")


def _learning_curves(
    name: str,
    points: pd.DataFrame,
    runs: pd.DataFrame,
    out_dir: Path,
    seed: int,
    axis: str,
    drift: continual.DriftSchedule | None = None,
) -> FigureResult:
    """The learning-curve panels of ``points`` (personal accuracy, ``step`` on the x-axis named ``axis``;
    the drift phases' starts marked where ``drift`` knows the runs' suites, on the feedback-event axis)."""
    if points.empty:
        return _skip(name, f"no finished run logged `{PERSONAL_ACCURACY}`")
    summary = _curve_summary(points, ["group"], seed)
    drawn = runs[runs["run_id"].isin(points["run_id"])]
    styles = _styles(drawn)
    panels = _curve_panels(drawn)
    paradigm_of = dict(zip(drawn["group"], drawn["paradigm"], strict=True))
    references = [g for g in styles if paradigm_of[g] in REFERENCE_PARADIGMS]
    # phase changes fall at feedback events; against questions they differ per group size
    changes = continual.phase_changes(drawn, drift) if axis == "feedback events" else []
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    with new_figure(
        nrows, ncols, width=min(MAX_WIDTH, 2.6 * ncols + 0.4), height=3.3 * nrows, sharey=True
    ) as (
        figure,
        axes,
    ):
        for ax, (title, members) in zip(axes.ravel(), panels, strict=False):
            for group in [g for g in references if g not in members]:  # floor and ceiling, for scale
                line = summary[summary["group"] == group]
                ax.plot(
                    line["step"], line["iqm"], color=styles[group].color, ls=styles[group].linestyle, lw=0.8
                )
            for group in members:
                style, line = styles[group], summary[summary["group"] == group]
                ax.fill_between(
                    line["step"], line["ci_low"], line["ci_high"], color=style.color, alpha=0.15, lw=0
                )
                ax.plot(
                    line["step"],
                    line["iqm"],
                    color=style.color,
                    ls=style.linestyle,
                    marker=style.marker,
                    ms=5,
                    mec="black",
                    mew=0.4,
                    lw=1.4,
                )
            _phase_lines(ax, changes)
            ax.set(title=title, xlabel=axis, ylim=(-0.02, 1.02))
            ax.legend(
                [_handle(styles[g], line=True) for g in members],
                members,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.2),
                fontsize=LEGEND_SIZE,
                ncol=1,
            )
        for ax in axes[:, 0]:
            ax.set_ylabel("personal accuracy (IQM)")
        for ax in axes.ravel()[len(panels) :]:
            ax.set_visible(False)
        paths = save_figure(figure, out_dir, name)
    reference_note = (
        f" Thin lines repeat {' and '.join(paradigm_of[g] for g in references)} in the other panels."
        if references and len(panels) > 1
        else ""
    )
    phase_note = " Dotted verticals: the stream enters a new drift phase." if changes else ""
    return FigureResult(
        name,
        paths,
        caption=f"Personal accuracy against {axis}: IQM across seeds, shaded 95% "
        f"stratified-bootstrap CI.{reference_note}{phase_note}",
    )


#: learning_vs_forgetting's panels: (per-run column, x-axis label, panel title); ``{forgetting}`` is
#: :func:`analysis.runs.forgetting_label` (runs from before the knowledge probe measured the general one).
_FORGETTING_PANELS = (
    ("forgetting", "{forgetting}\n(base minus final, lower is better)", "world knowledge"),
    ("override", "instruction override\n(base minus final, lower is better)", "explicit format requests"),
)


def learning_vs_forgetting(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Final personal accuracy against final knowledge forgetting (left) and, where runs logged it,
    instruction override (right), per run, with group means and 95% CIs."""
    name = "learning_vs_forgetting"
    runs = _finished_runs(table)
    accuracy = final_values(table, PERSONAL_ACCURACY)
    frames = [
        _per_run(runs, accuracy=accuracy, forgetting=forgetting_values(table)),
        _per_run(runs, accuracy=accuracy, override=final_values(table, INSTRUCTION_FORGETTING)),
    ]
    if frames[0].empty:
        return _skip(name, f"no finished run logged both `{PERSONAL_ACCURACY}` and `{FORGETTING}`")
    label = forgetting_label(table)
    panels = [
        (frame, column, xlabel.format(forgetting=label), title)
        for frame, (column, xlabel, title) in zip(frames, _FORGETTING_PANELS, strict=True)
        if not frame.empty
    ]
    styles = _styles(pd.concat([frame for frame, *_ in panels]))
    with new_figure(1, len(panels), width=MAX_WIDTH, height=3.9, sharey=True) as (figure, axes):
        for ax, (frame, column, xlabel, title) in zip(axes[0], panels, strict=True):
            _scatter_runs(ax, frame, column, "accuracy", styles)
            for group, style in styles.items():
                members = frame[frame["group"] == group]
                if members.empty:
                    continue
                x, x_low, x_high = _mean_ci(members, column, seed)
                y, y_low, y_high = _mean_ci(members, "accuracy", seed)
                ax.errorbar(
                    [x],
                    [y],
                    xerr=[[x - x_low], [x_high - x]],
                    yerr=[[y - y_low], [y_high - y]],
                    fmt=style.marker,
                    color=style.color,
                    markersize=9,
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                    elinewidth=1.2,
                    capsize=3,
                    zorder=5,
                )
            ax.axvline(0, color="0.4", lw=0.8, ls=":", zorder=1)
            ax.set(xlabel=xlabel, title=title if len(panels) > 1 else None)
        axes[0, 0].set_ylabel("final personal accuracy")
        _legend_right(axes[0, -1], styles, list(styles))
        paths = save_figure(figure, out_dir, name)
    left = (
        "Learning versus forgetting. Left: knowledge forgetting, the untouched base's accuracy "
        "on world facts no stream asks about (value alone) minus the final one; negative is a gain."
        if label == "knowledge forgetting"
        else f"Learning versus forgetting. Left: {label}, the untouched base's accuracy on the probe "
        "the runs measured minus the final one (runs from before the knowledge probe: the general "
        "probe, value and format); negative is a gain."
    )
    override_note = (
        " Right: instruction override, the untouched base's share of the suite's own questions answered "
        "in an explicitly requested format (other than the user's habit) minus the final share."
        if len(panels) > 1
        else ""
    )
    return FigureResult(
        name,
        paths,
        caption=f"{left}{override_note} One small marker per run; large markers are group means with 95% "
        "stratified-bootstrap CIs.",
    )


def accuracy_vs_compute(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Final personal accuracy against total FLOPs (answering, learning and maintaining state) and wall
    seconds, per run, with the Pareto front."""
    del seed  # no resampling: every point is one run
    name = "accuracy_vs_compute"
    runs = _finished_runs(table)
    accuracy = final_values(table, PERSONAL_ACCURACY)
    panels = [
        (metric, label, frame)
        for metric, label in ((TOTAL_FLOPS, "total FLOPs"), (WALL_SECONDS, "wall seconds"))
        if not (frame := _per_run(runs, accuracy=accuracy, cost=final_values(table, metric))).empty
    ]
    if not panels:
        return _skip(
            name, f"no finished run logged `{PERSONAL_ACCURACY}` with `{TOTAL_FLOPS}` or `{WALL_SECONDS}`"
        )
    styles = _styles(pd.concat([frame for _, _, frame in panels]).drop_duplicates("run_id"))
    with new_figure(1, len(panels), width=MAX_WIDTH, height=3.4, sharey=True) as (figure, axes):
        for ax, (_, label, frame) in zip(axes[0], panels, strict=True):
            _scatter_runs(ax, frame, "cost", "accuracy", styles)
            scale = _set_cost_scale(ax, frame["cost"].to_numpy())
            front = frame.iloc[pareto_front(frame["cost"], frame["accuracy"])]
            _draw_front(ax, front["cost"].to_numpy(), front["accuracy"].to_numpy())
            ax.set(xlabel=f"final {label}" + (" (symlog)" if scale == "symlog" else ""))
        axes[0, 0].set_ylabel("final personal accuracy")
        front_handle = Line2D([], [], color="black", ls="--", lw=1, marker="o", ms=8, mfc="none", mec="black")
        _legend_right(axes[0, -1], styles, list(styles), extra=[(front_handle, "Pareto front")])
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Final personal accuracy against compute (total FLOPs: every forward pass made to answer, "
        "to learn and to maintain state), one marker per run; ringed runs are the Pareto "
        "front (no run is both cheaper and more accurate), the dashed staircase the best accuracy "
        "reached at each cost.",
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
    top = max(1.0, float(summary["ci_high"].max()) * 1.05)
    ncols = min(4, len(facets))
    nrows = -(-len(facets) // ncols)
    with new_figure(
        nrows,
        ncols,
        width=min(MAX_WIDTH, 1.8 * ncols + 0.6),
        height=1.75 * nrows + 0.5,
        sharex=True,
        sharey=True,
    ) as (figure, axes):
        for ax, facet in zip(axes.ravel(), facets, strict=False):
            for weight in weights:
                line = summary[(summary["facet"] == facet) & (summary["weight"] == weight)]
                if line.empty:
                    continue
                ax.plot(line["step"], line["iqm"], color=colors[weight], marker="o", ms=3)
                ax.fill_between(
                    line["step"], line["ci_low"], line["ci_high"], color=colors[weight], alpha=0.18
                )
            ax.set_title(facet, fontsize=8)
            ax.set_ylim(0, top)  # searches are counts: the axis starts at 0, the same for every panel
        for ax in axes[-1, :]:
            ax.set_xlabel("feedback events")
        for ax in axes[:, 0]:
            ax.set_ylabel("searches / query")
        for ax in axes.ravel()[len(facets) :]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=colors[w], marker="o", ms=3) for w in weights]
        figure.legend(
            handles,
            [f"{w:g}" for w in weights],
            title="reward.weights.search_cost",
            loc="outside lower center",
            ncol=min(len(weights), 6),
            fontsize=LEGEND_SIZE,
            title_fontsize=LEGEND_SIZE,
        )
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Search calls per query at each evaluation, per value of `reward.weights.search_cost` "
        "(IQM across seeds, shaded 95% CI); all panels share one axis starting at 0.",
    )


def reward_decomposition(table: pd.DataFrame, out_dir: Path, *, seed: int = 0) -> FigureResult:
    """Per group, the mean over training of each reward component times its weight, with 95% CIs."""
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
    styles = _styles(data.drop_duplicates("run_id"))
    present = [c for c in components if c in set(data["component"])]
    groups = list(styles)
    ncols = min(2, len(present))
    nrows = -(-len(present) // ncols)
    with new_figure(
        nrows, ncols, width=MAX_WIDTH, height=nrows * (0.2 * len(groups) + 0.9), sharex=True, sharey=True
    ) as (
        figure,
        axes,
    ):
        for ax, component in zip(axes.ravel(), present, strict=False):
            at = data[data["component"] == component]
            for position, group in enumerate(groups):
                members = at[at["group"] == group]
                if members.empty:
                    continue
                mean, low, high = _mean_ci(members, "weighted", seed)
                ax.barh(
                    position, mean, color=styles[group].color, edgecolor="black", linewidth=0.4, height=0.7
                )
                ax.errorbar(
                    mean, position, xerr=[[mean - low], [high - mean]], color="black", lw=1, capsize=2
                )
            ax.axvline(0, color="black", lw=0.8)
            ax.set_title(component, fontsize=9)
            ax.set_yticks(range(len(groups)), groups)
        axes[0, 0].invert_yaxis()  # the first group on top (the y-axis is shared)
        for ax in axes[-1, :]:
            ax.set_xlabel("weighted reward per response")
            ax.xaxis.set_tick_params(labelbottom=True)
        for ax in axes.ravel()[len(present) :]:
            ax.set_visible(False)
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Reward decomposition: per group, the mean over training of each `train/reward/<component>` "
        "times its weight (bars: mean over runs; whiskers: 95% stratified-bootstrap CI), on one shared axis.",
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
    styles = _styles(frame)
    at_origin = frame[(frame["kl"] == 0) & (frame["forgetting"] == 0)]
    with new_figure(width=MAX_WIDTH, height=3.6) as (figure, axes):
        ax = axes[0, 0]
        _scatter_runs(ax, frame, "kl", "forgetting", styles)
        scale = _set_cost_scale(ax, frame["kl"].to_numpy())
        if len(at_origin) > 1:
            ax.annotate(
                f"{len(at_origin)} runs at (0, 0)",
                (0, 0),
                xytext=(12, 14),
                textcoords="offset points",
                fontsize=7.5,
                arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.8},
            )
        ax.set(
            xlabel="final KL to the base model" + (" (symlog)" if scale == "symlog" else ""),
            ylabel=f"final {forgetting_label(table)}",
        )
        _legend_right(ax, styles, list(styles))
        paths = save_figure(figure, out_dir, name)
    origin = ", ".join(f"{g} ×{n}" for g, n in at_origin.groupby("group", sort=False).size().items())
    notes = (f"at (0, 0): {origin}",) if len(at_origin) > 1 else ()
    return FigureResult(
        name,
        paths,
        caption="Forgetting against KL divergence to the base, one marker per run"
        + (" (KL on a symlog axis: linear near 0, logarithmic beyond)." if scale == "symlog" else "."),
        notes=notes,
    )


def phase_heatmap(
    table: pd.DataFrame, out_dir: Path, *, seed: int = 0, drift: continual.DriftSchedule | None = None
) -> FigureResult:
    """The drift matrix R (accuracy on phase j after training through phase i), mean over seeds, per group."""
    del seed
    name = "phase_heatmap"
    if not continual.has_phases(table):
        return _skip(name, "no run logged `eval/phase_accuracy/<i>` (no drift suite)")
    runs = _finished_runs(table)
    matrices, _ = continual.phase_matrices(table, runs, drift=drift)
    with_matrix = runs[runs["run_id"].isin(matrices)]
    if with_matrix.empty:
        return _skip(name, "no finished run has a drift matrix (see the continual-learning notes)")
    panels = []
    for key in ordered_groups(with_matrix):
        members = group_members(with_matrix, key)
        by_size: dict[int, list] = {}
        for run_id in members["run_id"]:
            by_size.setdefault(matrices[run_id].accuracy.shape[0], []).append(matrices[run_id])
        for size, group_matrices in sorted(by_size.items()):
            title = f"{group_label(*key)} (n={len(group_matrices)})"
            panels.append((title if len(by_size) == 1 else f"{title}, T={size}", group_matrices))
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    with new_figure(nrows, ncols, width=min(MAX_WIDTH, 1.75 * ncols + 0.5), height=1.75 * nrows + 0.3) as (
        figure,
        axes,
    ):
        for index, (ax, (title, group_matrices)) in enumerate(zip(axes.ravel(), panels, strict=False)):
            mean = continual.mean_matrix(group_matrices)  # (T, T)
            sns.heatmap(
                mean,
                annot=True,
                fmt=".2f",
                annot_kws={"fontsize": 7},
                vmin=0.0,
                vmax=1.0,
                cmap="viridis",
                cbar=False,
                square=True,
                ax=ax,
            )
            ax.set_title(title, fontsize=8)
            ax.set(
                xlabel="phase j" if index // ncols == nrows - 1 else "",
                ylabel="trained through i" if index % ncols == 0 else "",
            )
        for ax in axes.ravel()[len(panels) :]:
            ax.set_visible(False)
        figure.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.6, label="accuracy")
        paths = save_figure(figure, out_dir, name)
    return FigureResult(
        name,
        paths,
        caption="Accuracy on each drift phase's items, in that phase's world (columns j), after training "
        "through each phase (rows i), averaged over seeds; blank cells had no evaluation.",
    )


TABLE_FIGURES = (
    learning_curves,
    learning_curves_by_questions,
    learning_vs_forgetting,
    accuracy_vs_compute,
    search_calls,
    reward_decomposition,
    forgetting_vs_kl,
    phase_heatmap,
)


#: The table's figures that draw drift phases, which need the suites' schedule (``drift``).
DRIFT_FIGURES = (learning_curves, phase_heatmap)


def make_figures(
    table: pd.DataFrame,
    out_dir: Path,
    *,
    seed: int = 0,
    study=None,
    drift: continual.DriftSchedule | None = None,
) -> list[FigureResult]:
    """Every figure, in the order above: the table's, then the study's (skipped without a study).

    ``drift``: the task suites' drift phases (see ``analysis.continual``); without it, phase starts
    are not drawn and a drift matrix has as many phases as its runs logged.
    """
    figures = [partial(f, drift=drift) if f in DRIFT_FIGURES else f for f in TABLE_FIGURES]
    results = [figure(table, out_dir, seed=seed) for figure in figures]
    results.append(sweep_pareto(study, out_dir))
    results.append(sweep_importances(study, out_dir, seed=seed))
    return results
