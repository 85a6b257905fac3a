"""The changes grid of a compare answer, for the pages that show one: the
compare page and the commit page (both include ``compare/changes.html``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from features.web import service as web

_OP_SIGN = {"add": "+", "remove": "−", "modify": "~"}


@dataclass(frozen=True, slots=True)
class ChangesGrid:
    """What ``compare/changes.html`` draws: the column headers and the rows."""

    columns: list[str]
    rows: Markup


def changes_grid(diff: dict[str, Any] | None) -> ChangesGrid | None:
    """A page of a compare answer as a grid (``None`` without an answer)."""
    if diff is None:
        return None
    view = diff_view(diff)
    return ChangesGrid(columns=view["columns"], rows=change_rows(view))


def diff_view(diff: dict[str, Any]) -> dict[str, Any]:
    """A page of a compare answer laid out as a grid: one column list (head
    names; a renamed column under its new name; removed columns last), and per
    change the cells to draw, each plain or changed (old → new)."""
    sd = diff.get("schema_diff") or {}
    new_name = {r["from"]: r["to"] for r in sd.get("renamed", [])}
    columns = _columns(diff["changes"], new_name)
    old_name = {v: k for k, v in new_name.items()}
    rows = []
    for ch in diff["changes"]:
        rows.append(
            {
                "op": ch["op"],
                "base_position": ch.get("base_position"),
                "head_position": ch.get("head_position"),
                "key": ch.get("key"),
                "cells": _cells(ch, columns, old_name),
            }
        )
    return {"columns": columns, "rows": rows}


def _columns(changes: list[dict[str, Any]], new_name: dict[str, str]) -> list[str]:
    columns: list[str] = []
    seen: set[str] = set()
    for ch in changes:
        names = (new_name.get(b, b) for b in ch["row"]) if ch["op"] == "remove" else ch["row"]
        for name in names:
            if name not in seen:
                seen.add(name)
                columns.append(name)
    return columns


def _cells(
    ch: dict[str, Any], columns: list[str], old_name: dict[str, str]
) -> list[dict[str, Any]]:
    row = ch["row"]
    cells_changed = ch.get("cells") or {}
    cells = []
    for col in columns:
        if ch["op"] == "remove":
            b = old_name.get(col, col)
            cells.append({"value": row.get(b), "has": b in row})
        elif col in cells_changed:
            c = cells_changed[col]
            cells.append({"changed": True, "old": c["from"], "new": c["to"], "has": True})
        else:
            cells.append({"value": row.get(col), "has": col in row})
    return cells


def change_rows(view: dict[str, Any]) -> Markup:
    """The ``<tr>`` of a compare grid from ``diff_view``: changed cells old → new,
    drawn with one join rather than per-cell template logic."""
    cell = web.cell_html
    out = []
    for r in view["rows"]:
        op = r["op"]
        b, h = r["base_position"], r["head_position"]
        pos = f"{b + 1:,}" if b is not None else ""
        if op == "modify":
            pos += "→"
        if h is not None and op != "remove":
            pos += f"{h + 1:,}"
        cells = []
        for c in r["cells"]:
            if c.get("changed"):
                cells.append(
                    f'<td class="changed"><del aria-label="was">{cell(c["old"])}</del>'
                    f' → <ins aria-label="now">{cell(c["new"])}</ins></td>'
                )
            elif not c["has"]:
                cells.append("<td></td>")
            else:
                cells.append(f"<td>{cell(c['value'])}</td>")
        out.append(
            f'<tr class="{op}"><td class="op" title="{op}">{_OP_SIGN[op]}'
            f'<span class="skip">{op}</span></td><td class="pos">{pos}</td>{"".join(cells)}</tr>'
        )
    return Markup("\n".join(out))
