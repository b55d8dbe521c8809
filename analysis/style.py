"""How every figure looks and is written: one style per comparison group, deterministic PNG and PDF.

Figures are drawn on a ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot, no global
backend switch), inside a seaborn style and an rc context that fixes ``svg.hashsalt``; the PDF
carries no creation date and the PNG no software stamp, so the same data gives the same files.
PDFs embed TrueType fonts (``pdf.fonttype: 42``), not Type 3, which some venues reject.

Sizes: a figure is at most :data:`MAX_WIDTH` inches wide (a two-column page's full width), and
its PNG is written at :data:`PNG_DPI`, so the report's HTML shows it at its natural size and its
text at the size it was set in (9 pt reads as 9 pt printed).

Colours are Paul Tol's colour-blind-safe "muted" scheme: each RL algorithm has a hue family,
dark for ``full_ft`` and light for ``adapter`` (``grpo`` indigo/cyan, ``reinforce`` green/teal,
``ppo`` wine/rose, ``sft`` olive/sand), ``memory`` purple, the ``frozen`` floor grey and the
``oracle`` ceiling black; each paradigm has its own marker and line style, so every group of the
comparison differs from every other in colour and in marker. Groups beyond those (variants of a
grid, other paradigms or algorithms) take the Okabe-Ito colours not yet used, then cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RC = {
    "svg.hashsalt": "paradigm-harness",
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "pdf.fonttype": 42,  # TrueType in PDFs, never Type 3
    "ps.fonttype": 42,
    "legend.frameon": False,
}
#: Widest figure, in inches: fits a two-column page and the report's column at 1:1.
MAX_WIDTH = 7.0
PNG_DPI = 150

# Paul Tol's "muted" scheme (https://personal.sron.nl/~pault/), designed for colour-blind readers
_TOL = {
    "indigo": "#332288",
    "cyan": "#88CCEE",
    "teal": "#44AA99",
    "green": "#117733",
    "olive": "#999933",
    "sand": "#DDCC77",
    "rose": "#CC6677",
    "wine": "#882255",
    "purple": "#AA4499",
    "grey": "#777777",
    "black": "#000000",
}
#: (dark, light) hue family of each RL algorithm: full_ft takes the dark, adapter the light.
ALGORITHM_COLORS = {
    "grpo": (_TOL["indigo"], _TOL["cyan"]),
    "reinforce": (_TOL["green"], _TOL["teal"]),
    "ppo": (_TOL["wine"], _TOL["rose"]),
    "sft": (_TOL["olive"], _TOL["sand"]),
}
PARADIGM_COLORS = {"frozen": _TOL["grey"], "memory": _TOL["purple"], "oracle": _TOL["black"]}
#: Okabe-Ito colours (colour-blind safe) for groups the tables above do not name.
SPARE_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7")
#: Marker and line dashes ("" = solid) of each paradigm; others take the spare ones.
PARADIGM_MARKERS = {"frozen": "X", "memory": "D", "full_ft": "o", "adapter": "s", "oracle": "*"}
PARADIGM_DASHES = {
    "frozen": (1, 1.5),
    "memory": "",
    "full_ft": "",
    "adapter": (4, 2),
    "oracle": (5, 1.5, 1, 1.5),
}
SPARE_MARKERS = ("^", "v", "P", "<", ">", "h")


@dataclass(frozen=True)
class GroupStyle:
    """How one comparison group is drawn in every figure."""

    color: str
    marker: str
    dashes: tuple | str  # matplotlib dash pattern; "" is solid

    @property
    def linestyle(self) -> tuple | str:
        return "-" if self.dashes == "" else (0, self.dashes)


def group_styles(keys: Sequence[tuple[str, str, str]], labels: Sequence[str]) -> dict[str, GroupStyle]:
    """``{label: GroupStyle}`` for groups ``keys[i] = (paradigm, algorithm, variant)`` named ``labels[i]``.

    ``keys`` come in the canonical order (analysis/runs.ordered_groups), so a group's style
    depends only on which groups are drawn. The first variant of a known (paradigm, algorithm)
    takes its fixed colour; further variants and unknown groups take unused spare colours.
    """
    styles: dict[str, GroupStyle] = {}
    used: set[str] = set()
    cycled = 0  # spare colours handed out after all of them were used
    seen: dict[tuple[str, str], int] = {}
    extra_paradigms: list[str] = []
    for (paradigm, algorithm, _), label in zip(keys, labels, strict=True):
        index = seen[(paradigm, algorithm)] = seen.get((paradigm, algorithm), -1) + 1
        color = _fixed_color(paradigm, algorithm) if index == 0 else None
        if color is None or color in used:
            free = [c for c in SPARE_COLORS if c not in used]
            color = free[0] if free else SPARE_COLORS[cycled % len(SPARE_COLORS)]
            cycled += 0 if free else 1
        used.add(color)
        if paradigm not in PARADIGM_MARKERS and paradigm not in extra_paradigms:
            extra_paradigms.append(paradigm)
        marker = (
            PARADIGM_MARKERS.get(paradigm)
            or SPARE_MARKERS[extra_paradigms.index(paradigm) % len(SPARE_MARKERS)]
        )
        if index > 0:  # a variant: its own marker too, so colour is never the only cue
            marker = SPARE_MARKERS[(index - 1) % len(SPARE_MARKERS)]
        styles[label] = GroupStyle(color, marker, PARADIGM_DASHES.get(paradigm, (3, 1, 1, 1)))
    return styles


def _fixed_color(paradigm: str, algorithm: str) -> str | None:
    if paradigm in PARADIGM_COLORS and algorithm in ("", "none"):
        return PARADIGM_COLORS[paradigm]
    family = ALGORITHM_COLORS.get(algorithm)
    if family is not None and paradigm in ("full_ft", "adapter"):
        return family[0] if paradigm == "full_ft" else family[1]
    return None


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


@contextmanager
def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = 4.2,
    height: float = 3.2,
    sharex: bool | str = False,
    sharey: bool | str = False,
) -> Iterator[tuple[Figure, np.ndarray]]:
    """A ``width`` x ``height`` inch figure (at most :data:`MAX_WIDTH` wide) with ``axes: (nrows, ncols)``.

    A wider request is scaled down to :data:`MAX_WIDTH`, its height with it.
    """
    if width > MAX_WIDTH:
        width, height = MAX_WIDTH, height * MAX_WIDTH / width
    with matplotlib.rc_context(RC), sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)  # (nrows, ncols)
        yield figure, axes


def save_figure(figure: Figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.png`` and ``.pdf`` deterministically; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    with matplotlib.rc_context(RC):
        figure.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
        figure.set_layout_engine("none")  # keep the layout just computed instead of redoing it for the PDF
        figure.savefig(pdf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    return png, pdf
