"""A report as a list of blocks, rendered to Markdown (figures linked) or to self-contained HTML.

The HTML embeds every figure as a base64 PNG data URI and its style inline: it references no
external file, script or font. Its tables show an interval cell (``0.812 [0.790, 0.830]``) as the
value over its CI in smaller type, so the main table fits a 1280 px window. Text may use
backticks for inline code in both renderings.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.formats import markdown_table


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of strings (see analysis/formats.display_table)."""

    frame: pd.DataFrame


@dataclass(frozen=True)
class Image:
    """A PNG figure: linked from Markdown (relative path), embedded in HTML."""

    path: Path
    alt: str
    caption: str


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""


Block = Heading | Paragraph | Bullets | Table | Image | Code

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
div.table { overflow-x: auto; margin: 1rem 0; }
@media (min-width: 74rem) {  /* wide tables use the window's width, not only the text's column */
  div.table { width: calc(100vw - 2rem); margin-left: calc(50% - 50vw + 1rem); }
}
table { border-collapse: collapse; font-size: 0.8rem; }
th, td { border-top: 1px solid #bbb; border-bottom: 1px solid #bbb; padding: 0.25rem 0.4rem; }
td, th { text-align: right; white-space: nowrap; vertical-align: top; }
th { background: #f3f3f3; white-space: normal; }
td.prose { white-space: normal; min-width: 7em; }
.ci { font-size: 0.7rem; color: #555; }
td:nth-child(-n+2), th:nth-child(-n+2) { text-align: left; }
figure { margin: 1.5rem 0; }
img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
""".strip()


def to_markdown(blocks: Sequence[Block], base_dir: Path) -> str:
    """Markdown of ``blocks``; image paths are written relative to ``base_dir`` (the report's folder)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Paragraph):
            parts.append(f"{block.text}\n")
        elif isinstance(block, Bullets):
            parts.append("".join(f"- {item}\n" for item in block.items))
        elif isinstance(block, Table):
            parts.append(markdown_table(block.frame))
        elif isinstance(block, Image):
            relative = block.path.relative_to(base_dir).as_posix()
            parts.append(f"![{block.alt}]({relative})\n\n*{block.caption}*\n")
        elif isinstance(block, Code):
            fence = "~~~~" if "```" in block.text else "```"
            parts.append(f"{fence}{block.language}\n{block.text.rstrip()}\n{fence}\n")
    return "\n".join(parts)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_INTERVAL = re.compile(r"^(\S+) (\[[^\]]*\].*)$")  # "0.812 [0.790, 0.830] (n=2)": value, then its CI


def _html_cell(value: object) -> str:
    """A cell; an interval cell shows its value with the CI (and n) on a second, smaller line."""
    text = str(value)
    match = _INTERVAL.match(text)
    if match is None:
        return html.escape(text)
    return f'{html.escape(match.group(1))}<br><span class="ci">{html.escape(match.group(2))}</span>'


#: Words, not a number or an interval: such a cell may wrap ("7 trials x 2 users x 600 events").
_PROSE = re.compile(r"^(?=.*[A-Za-z]{3})(?!\S+ \[).+ .+$")


def _html_td(value: object) -> str:
    """A table cell; prose wraps (class ``prose``), numbers and intervals keep to one line each."""
    text = str(value)
    opening = '<td class="prose">' if _PROSE.match(text) else "<td>"
    return f"{opening}{_html_cell(text)}</td>"


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(_html_td(v) for v in row) + "</tr>\n" for row in frame.itertuples(index=False)
    )
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
    return f'<div class="table">{table}</div>'


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: Sequence[Block], title: str) -> str:
    """A self-contained HTML page of ``blocks``: figures as data URIs, inline CSS, no scripts."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>\n" + "".join(f"<li>{_inline(i)}</li>\n" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_html_table(block.frame))
        elif isinstance(block, Image):
            parts.append(
                f'<figure><img alt="{html.escape(block.alt)}" src="{_data_uri(block.path)}">'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Code):
            parts.append(f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>")
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
