"""HTML pieces of the report and the demo's page: tables that fit the page, inline figures.

Both pages build their tables here: one wider than the page's column is shown
transposed when that is narrower, so no page scrolls sideways.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Optional

import pandas as pd

from ._figures import png


def image(fig: Any, alt: str) -> str:
    """A matplotlib figure as an inline PNG with alt text (the figure is closed)."""
    return f"<img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{png(fig)}'/>"


#: the widest table (estimated pixels at the page's font) shown as it comes; a wider one
#: is shown transposed when that is narrower (the page's column is 1148 px wide)
MAX_TABLE_PX = 1100


def _cell_text(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def table_width(df: pd.DataFrame, digits: int = 4) -> int:
    """An estimate of the rendered width of :func:`table` ``(df)`` in pixels: 8 px per
    character of the widest cell of each column (text cells wrap at about 24), plus 14 px
    of padding and border per column."""
    def chars(values: Iterable[Any]) -> int:
        widths = [len(_cell_text(v, digits)) if isinstance(v, (int, float)) or "±" in str(v)
                  else min(len(str(v)), 24) for v in values]
        return max(widths, default=0)

    label = chars(df.index)
    cols = [max(len(str(c)), chars(df[c])) for c in df.columns]
    return 8 * (label + sum(cols)) + 14 * (len(cols) + 1)


def table(df: pd.DataFrame, *, marks: Optional[pd.DataFrame] = None, digits: int = 4) -> str:
    """``df`` as an HTML table; cells where ``marks`` is True get the class ``bad``. A
    table wider than :data:`MAX_TABLE_PX` (:func:`table_width`) is shown transposed, its
    rows as columns, when that is narrower: the page never scrolls sideways, nor do its
    tables."""
    width = table_width(df, digits)
    if width > MAX_TABLE_PX and table_width(df.T, digits) < width:
        df = df.T
        marks = None if marks is None else marks.T

    def cell(value: Any) -> str:
        return html.escape(_cell_text(value, digits))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, (label, row) in enumerate(df.iterrows()):
        cells = []
        for j, value in enumerate(row):
            bad = marks is not None and bool(marks.iloc[i, j])
            text = not isinstance(value, (int, float)) and "±" not in str(value)
            cls = " ".join(c for c in ("bad" if bad else "", "text" if text else "") if c)
            cells.append(f"<td class='{cls}'>{cell(value)}</td>" if cls
                         else f"<td>{cell(value)}</td>")
        rows.append(f"<tr><th class='text'>{html.escape(str(label))}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
