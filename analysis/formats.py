"""Fixed-format renderings of the numeric tables: display cells, CSV, Markdown and booktabs LaTeX.

A display cell reads ``IQM [CI low, CI high]`` with the column's fixed format, followed by
``(n=k)`` when fewer than the group's runs had the value, and ``n/a`` when none had. Nothing in
these renderings depends on time or on the order runs were logged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.names import HIGHER
from analysis.tables import Column

ARROWS = {HIGHER: "↑", "lower": "↓"}
_LATEX_ARROWS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
NOT_AVAILABLE = "n/a"


def interval_cell(iqm: float, low: float, high: float, n: int, fmt: str, runs: int) -> str:
    """``"0.812 [0.790, 0.830]"`` with ``fmt`` applied; ``(n=k)`` appended if k < runs; ``n/a`` if k = 0."""
    if n == 0:
        return NOT_AVAILABLE
    text = f"{iqm:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
    return text if n == runs else f"{text} (n={n})"


def display_table(summary: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """Strings for Markdown, HTML and LaTeX: Paradigm, Algorithm, Variant (if any), n, one cell per column."""
    show_variant = bool((summary["variant"] != "").any()) if len(summary) else False
    data: dict[str, list[str]] = {
        "Paradigm": summary["paradigm"].tolist(),
        "Algorithm": summary["algorithm"].tolist(),
    }
    if show_variant:
        data["Variant"] = summary["variant"].tolist()
    data["n"] = [str(int(n)) for n in summary["runs"]]
    if "learning_rate" in summary.columns:  # the main table: each arm's step size and its tuning
        data["LR"] = [_learning_rate(v) for v in summary["learning_rate"]]
        data["Tuned on"] = [
            _tuning_budget(t, lr) for t, lr in zip(summary["tuned_from"], data["LR"], strict=True)
        ]
    for column in columns:
        data[f"{column.label} {ARROWS[column.direction]}"] = [
            interval_cell(
                row[f"{column.key}.iqm"],
                row[f"{column.key}.ci_low"],
                row[f"{column.key}.ci_high"],
                int(row[f"{column.key}.n"]),
                column.fmt,
                int(row["runs"]),
            )
            for _, row in summary.iterrows()
        ]
    return pd.DataFrame(data, dtype="str")


def _learning_rate(value: object) -> str:
    """``1e-04`` for a logged ``0.0001``; the text itself when it is not a number; ``""`` when absent."""
    try:
        return f"{float(str(value)):.0e}" if str(value) else ""
    except ValueError:
        return str(value)


def _tuning_budget(tuned_from: object, learning_rate: str) -> str:
    """The tuning budget in a run's ``tuned_from`` (``file (7 trials x 2 users x 600 events)``):
    the part in parentheses; ``not tuned`` for a learning arm without one; ``""`` otherwise."""
    text = str(tuned_from) if isinstance(tuned_from, str) else ""
    if text and text.endswith(")") and " (" in text:
        return text[text.rindex(" (") + 2 : -1]
    return text or ("not tuned" if learning_rate else "")


def write_csv(summary: pd.DataFrame, path: Path) -> Path:
    """The numeric table as CSV: ``%.6g`` floats, empty cells for NaN, ``\\n`` line ends."""
    summary.to_csv(path, index=False, float_format="%.6g", lineterminator="\n", encoding="utf-8")
    return path


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown pipe table of a frame of strings (``|`` escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rows = [line(frame.columns), "|" + "|".join("---" for _ in frame.columns) + "|"]
    rows += [line(row) for row in frame.itertuples(index=False)]
    return "\n".join(rows) + "\n"


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the direction arrows in math mode."""
    escaped = "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))
    for arrow, command in _LATEX_ARROWS.items():
        escaped = escaped.replace(arrow, command)
    return escaped


def latex_table(frame: pd.DataFrame, comment: str) -> str:
    """A booktabs ``tabular`` (``\\toprule``, ``\\midrule``, ``\\bottomrule``) of a frame of strings.

    Text key columns (Paradigm, Algorithm, Variant) are left-aligned, the others right-aligned;
    ``comment`` becomes a leading ``%`` line. Needs ``\\usepackage{booktabs}``.
    """
    text_columns = sum(1 for c in frame.columns if c in ("Paradigm", "Algorithm", "Variant"))
    spec = "l" * text_columns + "r" * (len(frame.columns) - text_columns)
    lines = [
        f"% {comment}",
        "% requires \\usepackage{booktabs}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in frame.columns) + r" \\",
        "\\midrule",
    ]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)
