"""A compare for people: the schema diff, the summary, then changed rows
with each changed cell as old → new."""

from __future__ import annotations

from typing import Any


def _v(value: Any) -> str:
    from rich.markup import escape

    return "∅" if value is None else escape(str(value))


def print_diff(console: Any, diff: dict[str, Any]) -> None:
    from rich.table import Table

    sd, s = diff["schema_diff"], diff["summary"]
    console.print(
        f"[bold]{diff['table']}[/]: {diff['base_commit_id'][:12]}..{diff['head_commit_id'][:12]}"
    )
    for c in sd.get("added", []):
        console.print(f"  [green]+ column {_v(c)}[/]")
    for c in sd.get("removed", []):
        console.print(f"  [red]- column {_v(c)}[/]")
    for c in sd.get("renamed", []):
        console.print(f"  [yellow]~ column {_v(c['from'])} → {_v(c['to'])}[/]")
    for c in sd.get("retyped", []):
        console.print(f"  [yellow]~ column {_v(c['column'])}: {c['from']} → {c['to']}[/]")
    if sd.get("breaking"):
        console.print("  [red bold]breaking schema change[/]")
    console.print(
        f"  [green]{s['added']:,} added[/], [red]{s['removed']:,} removed[/], "
        f"[yellow]{s['modified']:,} modified[/], {s['unchanged']:,} unchanged"
    )
    changes = diff["changes"]
    if not changes:
        return
    columns: list[str] = []
    for ch in changes:
        for name in ch.get("row") or {}:
            if name not in columns:
                columns.append(name)
    t = Table(show_edge=False, header_style="bold")
    t.add_column("")
    for name in columns:
        t.add_column(name)
    marks = {"add": "[green]+[/]", "remove": "[red]-[/]", "modify": "[yellow]~[/]"}
    for ch in changes:
        row, cells = ch.get("row") or {}, ch.get("cells") or {}
        out = []
        for name in columns:
            if name in cells:
                out.append(f"[red]{_v(cells[name]['from'])}[/] → [green]{_v(cells[name]['to'])}[/]")
            else:
                style = {"add": "green", "remove": "red"}.get(ch["op"])
                text = _v(row.get(name))
                out.append(f"[{style}]{text}[/]" if style else text)
        t.add_row(marks[ch["op"]], *out)
    console.print(t)
    shown_to = diff["offset"] + len(changes)
    if shown_to < diff["total_changes"]:
        console.print(
            f"[dim]changes {diff['offset'] + 1}–{shown_to} of {diff['total_changes']:,} "
            f"(--offset {shown_to} for more)[/]"
        )
