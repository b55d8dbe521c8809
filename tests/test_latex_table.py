"""``table.tex`` compiles with pdflatex and fits the line it is set on, shrunk only when wider.

Skipped when pdflatex or booktabs is missing (``apt-get install texlive-latex-recommended``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.formats import compact_exponents, latex_table, split_interval
from analysis.load import save_parquet
from analysis.report import build_report
from tests.test_analysis import synthetic_table

PDFLATEX = shutil.which("pdflatex")


def _has_booktabs() -> bool:
    finder = shutil.which("kpsewhich")
    if finder is None:
        return False
    return bool(subprocess.run([finder, "booktabs.sty"], capture_output=True, text=True).stdout.strip())


needs_latex = pytest.mark.skipif(
    PDFLATEX is None or not _has_booktabs(),
    reason="no pdflatex with booktabs (apt-get install -y texlive-latex-recommended to run this check)",
)

DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs}
\usepackage{graphicx}
%(geometry)s
\begin{document}
\begin{table}
\setbox0=\hbox{\input{table.tex}}
\typeout{TABLE-WIDTH \the\wd0}
\typeout{LINE-WIDTH \the\linewidth}
\input{table.tex}
\end{table}
\end{document}
"""


def _set(tex: str, directory: Path, linewidth: str | None) -> tuple[float, float, str]:
    """(table width, line width) in pt and the log of a document setting ``tex``."""
    (directory / "table.tex").write_text(tex, encoding="utf-8")
    geometry = rf"\setlength{{\textwidth}}{{{linewidth}}}" if linewidth else ""
    (directory / "doc.tex").write_text(DOCUMENT % {"geometry": geometry}, encoding="utf-8")
    result = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (directory / "doc.log").read_text(encoding="utf-8", errors="replace")
    assert result.returncode == 0, log[-3000:]
    table = float(re.search(r"TABLE-WIDTH ([\d.]+)pt", log).group(1))
    line = float(re.search(r"LINE-WIDTH ([\d.]+)pt", log).group(1))
    return table, line, log


@pytest.fixture(scope="module")
def table_tex(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("latex")
    parquet = save_parquet(synthetic_table(), directory / "runs.parquet")
    return build_report([], None, directory / "report", parquet=parquet, seed=0).table_tex.read_text()


@needs_latex
def test_the_main_table_fits_the_text_width_of_an_article(table_tex, tmp_path):
    table, line, log = _set(table_tex, tmp_path, None)  # article: 345 pt
    assert table <= line + 0.1  # \hfuzz: LaTeX's own tolerance (scaling rounds to ~0.01 pt)
    assert "Overfull \\hbox" not in log


@needs_latex
def test_a_table_narrower_than_the_line_keeps_its_natural_size(table_tex, tmp_path):
    natural, _, _ = _set(table_tex.replace(r">\linewidth", r">\maxdimen"), tmp_path, "20in")
    table, line, _ = _set(table_tex, tmp_path, "20in")
    assert table == natural < line  # never enlarged


def test_interval_cells_split_into_value_and_interval_with_compact_exponents():
    assert split_interval("0.812 [0.790, 0.830] (n=2)") == ("0.812", "[0.790, 0.830] (n=2)")
    assert split_interval("n/a") == ("n/a", "")
    assert compact_exponents("5.86e+08 [5.43e+08, 1e-05]") == "5.86e8 [5.43e8, 1e-5]"
    tex = latex_table(
        pd.DataFrame({"Paradigm": ["full_ft"], "n": ["3"], "FLOPs ↓": ["5.86e+08 [5e+08, 6e+08]"]}),
        "a comment",
    )
    assert r"full\_ft & 3 & 5.86e8 \\" in tex and r"{\scriptsize [5e8, 6e8]}" in tex
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
