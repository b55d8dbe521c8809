"""The report's "Serving cost at scale" section: a figure and a CSV from ``analysis.serving``.

``serving_cost`` draws, against the number of users (10^3 to 10^6), the fleet's storage, the FLOPs
per query and the per-user state bytes loaded per query, one line per comparison group, with the
assumptions printed under the panels; ``serving_blocks`` writes it, ``serving.csv`` (every cell) and
the measured per-user inputs as report blocks. Without a ``full_ft`` run (the base's size) or any
run with the cost metrics, the section says why it is empty instead.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from analysis.document import Block, Heading, Image, Paragraph, Table
from analysis.runs import GROUP_COLUMNS, group_label, ordered_groups
from analysis.serving import Assumptions, per_user_costs, serving_costs, shared_base
from analysis.style import FigureResult, group_styles, new_figure, save_figure

FIGURE = "serving_cost"
CSV = "serving.csv"
_PANELS = (
    ("storage_bytes", "Storage of all users\n(bytes)"),
    ("flops_per_query", "FLOPs per query\n(answer + learning)"),
    ("loaded_bytes_per_query", "User state loaded\nper query (bytes)"),
)


def serving_cost(picture: pd.DataFrame, out_dir: Path, assumptions: Assumptions) -> FigureResult:
    """The three panels of ``picture`` (:func:`analysis.serving.serving_costs`) against users."""
    groups = ordered_groups(picture)
    styles = group_styles(groups, [group_label(*key) for key in groups])  # as in every other figure
    with new_figure(1, 3, width=7.0, height=4.6) as (figure, axes):
        figure.get_layout_engine().set(rect=(0, 0.25, 1, 0.75))  # the bottom quarter holds the assumptions
        for paradigm, algorithm, variant in groups:
            label = group_label(paradigm, algorithm, variant)
            rows = picture[
                (picture["paradigm"] == paradigm)
                & (picture["algorithm"] == algorithm)
                & (picture["variant"] == variant)
            ]
            for axis, (column, _) in zip(axes[0], _PANELS, strict=True):
                axis.plot(
                    rows["users"],
                    rows[column].clip(lower=1.0),  # log axes: 0 drawn at 1
                    color=styles[label].color,
                    linestyle=styles[label].linestyle,
                    marker=styles[label].marker,
                    markersize=3,
                    label=label,
                )
        for axis, (_, title) in zip(axes[0], _PANELS, strict=True):
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel("users")
            axis.set_title(title, fontsize=8)
        axes[0][2].set_ylabel("0 drawn at 1")
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside right upper", fontsize=6)
        wrapped = [textwrap.fill(line, 125, subsequent_indent="  ") for line in assumptions.lines()]
        text = "Assumptions:\n" + "\n".join(wrapped)
        figure.text(0.01, 0.21, text, fontsize=7, va="top", ha="left")
        paths = save_figure(figure, out_dir, FIGURE)
    return FigureResult(
        FIGURE,
        paths,
        caption="Storage and compute per query for 10^3 to 10^6 users, from the runs' measured per-user "
        "costs (0 drawn at 1 on the log axes); the assumptions are printed under the panels",
        notes=assumptions.lines(),
    )


def serving_blocks(
    table: pd.DataFrame, done: pd.DataFrame, out_dir: Path, assumptions: Assumptions | None = None
) -> list[Block]:
    """The section's blocks; writes ``<out_dir>/serving.csv`` and ``<out_dir>/figures/serving_cost.*``."""
    assumptions = assumptions or Assumptions()
    blocks: list[Block] = [Heading(2, "Serving cost at scale")]
    costs = per_user_costs(table, done)
    if costs.empty:
        return [*blocks, Paragraph("No finished run logged the cost metrics: nothing to scale.")]
    try:
        parameters, base_bytes = shared_base(costs)
    except ValueError as error:
        return [*blocks, Paragraph(f"Skipped: {error} (the shared base's size comes from a full_ft run).")]
    picture = serving_costs(costs, parameters, base_bytes, assumptions)
    picture.to_csv(out_dir / CSV, index=False, float_format="%.6g", lineterminator="\n")
    figure = serving_cost(picture, out_dir / "figures", assumptions)
    largest = picture[picture["users"] == max(assumptions.users)]
    shown = pd.DataFrame(
        {
            "Group": [group_label(p, a, v) for p, a, v in largest[GROUP_COLUMNS].itertuples(index=False)],
            "State B/user": [f"{b:.3g}" for b in costs["state_bytes"]],
            "Tokens/query": [f"{t:.1f}" for t in costs["tokens_per_query"]],
            "Storage, 1e6 users": [f"{b:.3g}" for b in largest["storage_bytes"]],
            "FLOPs/query": [f"{f:.3g}" for f in largest["flops_per_query"]],
            "of which learning": [f"{f:.3g}" for f in largest["learning_flops_per_query"]],
            "Loaded B/query, 1e6 users": [f"{b:.3g}" for b in largest["loaded_bytes_per_query"]],
        },
        dtype="str",
    )
    return [
        *blocks,
        Paragraph(
            "The measured per-user state, tokens per query and learning FLOPs per feedback event (mean "
            f"over each group's finished runs), scaled to {', '.join(f'{u:.0e}' for u in assumptions.users)} "
            f"users. Base: {parameters:.3g} parameters, {base_bytes:.3g} bytes (from the full_ft runs). "
            f"Every cell is in `{CSV}`."
        ),
        Table(shown),
        Image(figure.png, figure.name, f"{figure.caption} (PDF: `figures/{FIGURE}.pdf`)"),
        Paragraph("Assumptions: " + " ".join(assumptions.lines())),
    ]
