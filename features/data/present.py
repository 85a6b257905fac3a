"""The data grid of the dataset home page.

A page of 100 rows × 12 columns is 1,200 cells: drawn here with one join
rather than per-cell template logic (~15 ms less per page)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from features.web import service as web

NUMERIC = frozenset({"integer", "float", "decimal"})


def grid(page: dict[str, Any] | None, first: int) -> Markup | None:
    """The rows of a page from ``data.service.page`` drawn (``None`` without rows)."""
    if not page or not page["rows"]:
        return None
    return grid_rows(page["rows"], [c["type"] for c in page["columns"]], first)


def grid_rows(rows: list[tuple[Any, ...]], kinds: list[str], first: int) -> Markup:
    """The ``<tr>`` of a data grid: a row number (from ``first``) then the cells."""
    cell = web.cell_html
    opens = ['<td class="num">' if k in NUMERIC else "<td>" for k in kinds]
    out = []
    for n, row in enumerate(rows, start=first):
        cells = "".join(f"{o}{cell(v)}</td>" for o, v in zip(opens, row, strict=True))
        out.append(f'<tr><td class="pos">{n:,}</td>{cells}</tr>')
    return Markup("\n".join(out))
