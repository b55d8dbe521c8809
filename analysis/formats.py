"""Fixed-format renderings of the numeric tables: display cells, CSV, Markdown and booktabs LaTeX.

A display cell reads ``IQM [CI low, CI high]`` with the column's fixed format, followed by
``(n=k)`` when fewer than the group's runs had the value, and ``n/a`` when none had. Nothing in
these renderings depends on time or on the order runs were logged in.
"""

from __future__ import annotations

import re
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


def group_cells(summary: pd.DataFrame) -> dict[str, list[str]]:
    """The cells that name each row of a per-group table: Paradigm, Algorithm, Variant (if any), n."""
    data: dict[str, list[str]] = {
        "Paradigm": summary["paradigm"].tolist(),
        "Algorithm": summary["algorithm"].tolist(),
    }
    if len(summary) and (summary["variant"] != "").any():
        data["Variant"] = summary["variant"].tolist()
    data["n"] = [str(int(n)) for n in summary["runs"]]
    return data


def display_table(summary: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """Strings for Markdown, HTML and LaTeX: :func:`group_cells`, then one cell per column."""
    data = group_cells(summary)
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


#: "0.812 [0.790, 0.830] (n=2)": the value, then its interval (and n), as display cells read.
INTERVAL_CELL = re.compile(r"^(\S+) (\[[^\]]*\].*)$")
_KEY_COLUMNS = ("Paradigm", "Algorithm", "Variant")
TABLE_BOX = r"\harnesstablebox"


_EXPONENT = re.compile(r"(\d)e\+?(-?)0*(\d+)")


def compact_exponents(text: str) -> str:
    """``5.86e+08`` → ``5.86e8``, ``1e-05`` → ``1e-5`` (LaTeX cells: narrower, same number)."""
    return _EXPONENT.sub(r"\1e\2\3", text)


def split_interval(cell: str) -> tuple[str, str]:
    """``("0.812", "[0.790, 0.830]")`` for an interval cell; ``(cell, "")`` for any other."""
    match = INTERVAL_CELL.match(str(cell))
    return (match.group(1), match.group(2)) if match else (str(cell), "")


def _header_lines(label: str) -> tuple[str, str]:
    """A header label split at the space nearest its middle (``"Personal acc. ↑"`` → two lines)."""
    spaces = [i for i, char in enumerate(label) if char == " "]
    if not spaces:
        return label, ""
    cut = min(spaces, key=lambda i: abs(i - len(label) / 2))
    return label[:cut], label[cut + 1 :]


def latex_table(frame: pd.DataFrame, comment: str) -> str:
    """A booktabs ``tabular`` (``\\toprule``, ``\\midrule``, ``\\bottomrule``) of a frame of strings.

    Laid out to fit a page: headers on two lines, each interval cell's value on the group's row
    with its CI (and n) in ``\\scriptsize`` on the row below, exponents compact (``5.86e8``). The
    tabular is set in a box and shrunk to ``\\linewidth`` only when it is still wider (never
    enlarged), so it fits a column or a page whatever the number of columns. Text key columns
    (Paradigm, Algorithm, Variant) are left-aligned, the others right-aligned; ``comment``
    becomes a leading ``%`` line. Needs ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}``;
    ``\\input`` it inside a ``table`` environment.
    """
    key_columns = sum(1 for c in frame.columns if c in _KEY_COLUMNS)
    spec = "l" * key_columns + "r" * (len(frame.columns) - key_columns)
    headers = [_header_lines(str(c)) for c in frame.columns]
    lines = [
        f"% {comment}",
        "% requires \\usepackage{booktabs} and \\usepackage{graphicx}; shrinks to \\linewidth if wider",
        f"\\ifdefined{TABLE_BOX}\\else\\newsavebox{{{TABLE_BOX}}}\\fi",
        f"\\sbox{{{TABLE_BOX}}}{{%",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(top) for top, _ in headers) + r" \\",
        " & ".join(latex_escape(bottom) for _, bottom in headers) + r" \\",
        "\\midrule",
    ]
    for index, row in enumerate(frame.itertuples(index=False)):
        cells = [
            tuple(map(compact_exponents, split_interval(c))) if i >= key_columns else (str(c), "")
            for i, c in enumerate(row)
        ]
        lines.append(" & ".join(latex_escape(value) for value, _ in cells) + r" \\")
        if any(interval for _, interval in cells):
            intervals = [
                f"{{\\scriptsize {latex_escape(interval)}}}" if interval else "" for _, interval in cells
            ]
            spacing = "[3pt]" if index < len(frame) - 1 else ""
            lines.append(" & ".join(intervals) + r" \\" + spacing)
    lines += [
        "\\bottomrule",
        "\\end{tabular}}%",
        f"\\ifdim\\wd{TABLE_BOX}>\\linewidth\\resizebox{{\\linewidth}}{{!}}{{\\usebox{{{TABLE_BOX}}}}}%",
        f"\\else\\usebox{{{TABLE_BOX}}}\\fi",
        "",
    ]
    return "\n".join(lines)
