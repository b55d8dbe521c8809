"""How every figure looks and is written: one color per paradigm, deterministic PNG and PDF files.

Figures are drawn on a ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot, no global
backend switch), inside a seaborn style and an rc context that fixes ``svg.hashsalt``; the PDF
carries no creation date and the PNG no software stamp, so the same data gives the same files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.names import PARADIGM_ORDER

RC = {"svg.hashsalt": "paradigm-harness", "figure.dpi": 100, "savefig.dpi": 150, "font.size": 9}
_BASE = sns.color_palette("colorblind", 10)
#: The one paradigm → color mapping of every figure (frozen grey, memory blue, full_ft red,
#: adapter green, oracle purple); other paradigms take the remaining colors by name.
PARADIGM_COLORS: dict[str, tuple[float, float, float]] = {
    name: _BASE[index] for name, index in zip(PARADIGM_ORDER, (7, 0, 3, 2, 4), strict=True)
}
_SPARE_COLORS = [_BASE[i] for i in (1, 9, 5, 6, 8)]
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v", "P", "X")


@dataclass(frozen=True)
class FigureResult:
    """What a figure function did: the files it wrote, or why it skipped (``skipped`` set, no paths)."""

    name: str
    paths: tuple[Path, ...] = ()
    skipped: str | None = None
    caption: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def png(self) -> Path | None:
        return next((p for p in self.paths if p.suffix == ".png"), None)


def paradigm_palette(paradigms: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """Colors for ``paradigms``: the fixed ones from :data:`PARADIGM_COLORS`, others by sorted name."""
    names = set(paradigms)
    extras = sorted(names - set(PARADIGM_COLORS))
    palette = {name: color for name, color in PARADIGM_COLORS.items() if name in names}
    for index, name in enumerate(extras):
        palette[name] = _SPARE_COLORS[index % len(_SPARE_COLORS)]
    return palette


@contextmanager
def new_figure(
    nrows: int = 1, ncols: int = 1, *, width: float = 4.2, height: float = 3.2
) -> Iterator[tuple[Figure, np.ndarray]]:
    """A figure with an Agg canvas and ``axes: (nrows, ncols)``, drawn in the harness's style."""
    with matplotlib.rc_context(RC), sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        figure = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(nrows, ncols, squeeze=False)  # (nrows, ncols)
        yield figure, axes


def save_figure(figure: Figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.png`` and ``.pdf`` deterministically; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    with matplotlib.rc_context(RC):
        figure.savefig(png, format="png", metadata={"Software": None})
        figure.set_layout_engine("none")  # keep the layout just computed instead of redoing it for the PDF
        figure.savefig(pdf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    return png, pdf
