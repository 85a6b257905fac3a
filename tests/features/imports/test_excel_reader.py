from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pytest

from features.imports.errors import ImportFailed
from features.imports.excel_reader import ExcelSource, sheet_names


def workbook(tmp_path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(r)
    path = tmp_path / "book.xlsx"
    wb.save(path)
    return path


def read(path: Path, sheet: str | None = None, **options: Any) -> tuple[ExcelSource, pa.Table]:
    src = ExcelSource(path, options=options, fmt="excel", on_bytes=lambda n: None, sheet=sheet)
    batches = [b for b, _ in src]
    table = pa.Table.from_batches(batches) if batches else pa.table({})
    return src, table


def test_types_from_every_cell(tmp_path: Path) -> None:
    path = workbook(
        tmp_path,
        {
            "People": [
                ["id", "name", "score", "when", "day", "ok", "mixed", "empty"],
                [
                    1,
                    "ann",
                    1.5,
                    dt.datetime(2024, 1, 2, 3, 4, 5),
                    dt.date(2024, 1, 2),
                    True,
                    1,
                    None,
                ],
                [
                    2,
                    "bob",
                    None,
                    dt.datetime(2024, 1, 3, 0, 0, 1),
                    dt.date(2024, 1, 3),
                    False,
                    "x",
                    None,
                ],
                [3, None, 2, dt.date(2024, 1, 4), dt.date(2024, 1, 4), None, 2.5, None],
            ]
        },
    )
    src, t = read(path)
    assert src.names == ["id", "name", "score", "when", "day", "ok", "mixed", "empty"]
    assert src.types() == [
        "integer", "string", "float", "datetime", "date", "boolean", "string", "string",
    ]  # fmt: skip
    assert t.column("id").to_pylist() == [1, 2, 3]
    assert t.column("score").to_pylist() == [1.5, None, 2.0]
    assert t.column("when").to_pylist()[2] == dt.datetime(2024, 1, 4)
    assert t.column("mixed").to_pylist() == ["1", "x", "2.5"]
    assert t.column("empty").to_pylist() == [None, None, None]
    assert src.nullable()[:3] == [False, True, True]
    assert src.dialect == {"format": "excel", "sheet": "People", "header": True}


def test_sheets_and_headers(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"A": [["x"], [1]], "B": [[1, 2], [3, 4]], "C": []})
    assert sheet_names(path, {}) == ["A", "B", "C"]
    assert sheet_names(path, {"sheet": "B"}) == ["B"]
    with pytest.raises(ImportFailed) as exc:
        sheet_names(path, {"sheet": ["B", "Z"]})
    assert exc.value.code == "unknown_sheet"
    src, t = read(path, "B")  # first row is numbers: no header
    assert src.names == ["column_1", "column_2"] and t.num_rows == 2
    src, t = read(path, "C")
    assert src.names == [] and src.rows == 0


def test_bad_workbooks(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"A": [["x", "x"], [1, 2]]})
    with pytest.raises(ImportFailed) as exc:
        read(path)
    assert exc.value.code == "duplicate_column_name"
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImportFailed) as exc:
        sheet_names(broken, {})
    assert exc.value.code == "corrupt_excel"
    path = workbook(tmp_path, {"A": [["n"], ["abc"]]})
    with pytest.raises(ImportFailed) as exc:
        read(path, column_types={"n": "integer"})
    assert exc.value.code == "bad_value" and exc.value.extra["line"] == 2


def _both(path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[Any, Any]:
    """The sheet through fastexcel (the fast way) and cell by cell."""
    from features.imports import excel_reader

    fast, t1 = read(path, **options)
    with monkeypatch.context() as m:
        m.setattr(excel_reader, "_read_fast", lambda *a, **k: None)
        slow, t2 = read(path, **options)
    return (fast, t1), (slow, t2)


@pytest.mark.parametrize(
    "rows",
    [
        [
            ["id", "name", "score", "when", "day", "ok", "empty", "big"],
            [
                1,
                "ann",
                1.5,
                dt.datetime(2024, 1, 2, 3, 4, 5),
                dt.date(2024, 1, 2),
                True,
                None,
                2**40,
            ],
            [
                2,
                "",
                None,
                dt.datetime(2024, 1, 3, 0, 0, 1),
                dt.datetime(2024, 1, 3),
                False,
                None,
                3,
            ],
            [3, None, 2, dt.date(2024, 1, 4), dt.date(2024, 1, 4), None, None, 1e20],
            [None, None, None, None, None, None, None, None],
        ],
        [[1, 2.5, "a"], [None, 3.0, "b"], [4, 5.0, None]],  # numbers first: no header
        [["a", None], [1, 2], [3, 4]],  # a blank header cell: no header
        [["only"], ["x"], ["y"], [None], [None]],
        [["x", "2024"], ["y", "z"]],  # a header that reads like a number, over text
        [["  ", "b"], ["y", "z"]],  # a blank header cell over text: no header
        [[True, 1], [False, 2]],
        [["n", "d"], [1, dt.datetime(2024, 5, 6, 7, 8, 9, 123000)], [2, None]],
    ],
)
def test_fastexcel_and_cell_by_cell_give_the_same_table(
    tmp_path: Path, rows: list[list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workbook(tmp_path, {"S": rows})
    (fast, t1), (slow, t2) = _both(path, monkeypatch)
    assert (fast.names, fast.types(), fast.nullable(), fast.dialect) == (
        slow.names,
        slow.types(),
        slow.nullable(),
        slow.dialect,
    )
    assert t1.to_pylist() == t2.to_pylist()
    assert t1.schema == t2.schema


def test_the_fast_way_is_taken_for_a_plain_sheet(tmp_path: Path) -> None:
    from features.imports import excel_reader

    path = workbook(tmp_path, {"S": [["a", "b"], [1, "x"], [2, "y"]]})
    got = excel_reader._read_fast(path, None, None, {})
    assert got is not None and got[1] == ["a", "b"] and got[3] == ["integer", "string"]
    # a header cell that reads like a number: cell by cell
    path = workbook(tmp_path, {"S": [["a", "2024"], [1, 2]]})
    assert excel_reader._read_fast(path, None, None, {}) is None


def test_exact_types_declared_for_a_sheet(tmp_path: Path) -> None:
    """Workbook numbers and times read as declared decimals, times and
    durations (their text, as Excel shows it, parsed exactly)."""
    path = workbook(
        tmp_path,
        {"A": [["price", "at", "took"], [12.3, dt.time(8, 15), "PT1H"], [-0.05, None, 90]]},
    )
    types = {"price": "decimal(10,2)", "at": "time", "took": "duration"}
    src, table = read(path, column_types=types)
    assert src.types() == ["decimal(10,2)", "time", "duration"]
    assert table.column("price").type == pa.decimal128(10, 2)
    assert [str(v) for v in table.column("price").to_pylist()] == ["12.30", "-0.05"]
    assert table.column("at").to_pylist() == [dt.time(8, 15), None]
    assert table.column("took").to_pylist() == [
        dt.timedelta(hours=1),
        dt.timedelta(microseconds=90),
    ]
    bad = workbook(tmp_path, {"A": [["price"], [1.005]]})
    with pytest.raises(ImportFailed) as exc:
        read(bad, column_types={"price": "decimal(10,2)"})
    assert exc.value.code == "bad_value" and exc.value.extra["row"] == 1


def test_duration_cells_read_back_as_durations(tmp_path: Path) -> None:
    """Durations exported to xlsx come back as cells calamine reads as
    timedeltas: declared ``duration``, they are the same durations."""
    path = workbook(tmp_path, {"A": [["took"], [dt.timedelta(hours=1, seconds=1)]]})
    src, table = read(path, column_types={"took": "duration"})
    assert table.column("took").to_pylist() == [dt.timedelta(hours=1, seconds=1)]
