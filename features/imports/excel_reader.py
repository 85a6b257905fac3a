"""Excel and OpenDocument workbooks (.xlsx, .xlsm, .xls, .ods) via calamine.

A sheet is read by ``fastexcel`` (calamine straight into Arrow columns, no
Python object per cell: ~2x less CPU than python-calamine's cells, and no
per-cell conversion after) whenever every column holds one kind of cell;
sheets it cannot read exactly as described below (a column mixing numbers and
text, durations, a header row that is not plainly text, forced types that
differ from the cells') are read cell by cell through ``python-calamine``.
Both give the same table. Decision 0012.

One table per sheet (or the sheets named in ``options.sheet``), named after
the sheet. Cells come typed from calamine; formulas give their cached values.

- Header: the first row is the header when every cell of it is non-empty text
  (``options.header`` overrides); otherwise columns are ``column_1`` ….
- Types, from every value of a column: all booleans → boolean; all numbers
  with no fractional part (Excel stores every number as a float) → integer;
  numbers → float; dates → date; dates and date-times → datetime; anything else
  → string, where numbers are written without a spurious ".0" and dates in
  ISO 8601.
- Empty cells are null (Excel has no separate empty string).
- Trailing empty columns and rows are dropped; a sheet with no rows is an
  empty table.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastexcel
import pyarrow as pa
import pyarrow.compute as pc
import python_calamine as calamine

from core.typed_values import duration_iso
from features.imports.csv_problems import check_forced_columns, check_width
from features.imports.csv_types import convert
from features.imports.errors import ImportFailed

BATCH_ROWS = 65_536
_INT64 = 2**63


def check_expansion(path: Path, limit: int) -> None:
    """A workbook is a ZIP: count the bytes its parts really expand to (the sizes
    it declares are not trusted) before calamine holds a sheet in memory."""
    if not zipfile.is_zipfile(path):
        return
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as part:
                    while block := part.read(1 << 20):
                        total += len(block)
                        if total > limit:
                            raise ImportFailed(
                                f"the workbook expands past {limit} bytes (at {info.filename!r})",
                                code="too_large",
                                limit=limit,
                            )
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ImportFailed(f"the workbook is damaged: {exc}", code="corrupt_excel") from None


def sheet_names(path: Path, options: dict[str, Any]) -> list[str]:
    """The sheets to import: those in ``options.sheet``, else every visible one."""
    try:
        wb = calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - calamine raises several kinds
        raise ImportFailed(
            f"the file is not a readable workbook: {exc}", code="corrupt_excel"
        ) from None
    try:
        visible = [
            m.name
            for m in wb.sheets_metadata
            if str(m.visible).endswith("Visible") and str(m.typ).endswith("WorkSheet")
        ]
        wanted = options.get("sheet")
        if wanted is None:
            return visible or list(wb.sheet_names)
        wanted_list = [wanted] if isinstance(wanted, str) else list(wanted)
        missing = [s for s in wanted_list if s not in wb.sheet_names]
        if missing:
            raise ImportFailed(
                f"the workbook has no sheet {', '.join(repr(s) for s in missing)}; "
                f"it has {', '.join(repr(s) for s in wb.sheet_names)}",
                code="unknown_sheet",
                sheet=missing[0],
            )
        return wanted_list
    finally:
        wb.close()


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dt.date, dt.datetime, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):  # a duration cell: ISO 8601, as durations are written
        return duration_iso(v)
    return str(v)


def _value(v: Any, kind: str) -> Any:
    if kind == "integer":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "datetime" and not isinstance(v, dt.datetime):
        return dt.datetime.combine(v, dt.time())
    if kind == "string":
        return _text(v)
    return v


_ARROW = {
    "boolean": pa.bool_(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "string": pa.large_string(),
}


class ExcelSource:
    """One sheet as a stream of (batch, typed arrays), like ``CsvSource``."""

    def __init__(
        self,
        path: Path,
        *,
        options: dict[str, Any],
        fmt: str,
        on_bytes: Callable[[int], None],
        types: dict[str, str] | None = None,
        sheet: str | None = None,
    ) -> None:
        self.path = path
        self.on_bytes = on_bytes
        self.sheet = sheet
        forced = {**(options.get("column_types") or {}), **(types or {})}
        fast = _read_fast(path, sheet, options.get("header"), forced)
        if fast is not None:
            self.sheet, self.names, self._columns, self._types, header = fast
            check_width(len(self.names), sheet=self.sheet)
            check_forced_columns(options.get("column_types") or {}, self.names, sheet=self.sheet)
            self._nulls = [c.null_count > 0 for c in self._columns]
            self._rows = []
            self._nrows = len(self._columns[0]) if self._columns else 0
            self._first_line = 2 if header else 1
            self.rows = 0
            self.dialect = {"format": "excel", "sheet": self.sheet, "header": header}
            return
        try:
            wb = calamine.CalamineWorkbook.from_path(str(path))
            ws = wb.get_sheet_by_name(sheet) if sheet else wb.get_sheet_by_index(0)
            self.sheet = ws.name
            rows = ws.to_python()
            wb.close()
        except ImportFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ImportFailed(
                f"sheet {sheet!r} cannot be read: {exc}", code="corrupt_excel", sheet=sheet
            ) from None
        rows = _trim(rows)
        width = len(rows[0]) if rows else 0
        check_width(width, sheet=self.sheet)
        asked: bool | None = options.get("header")
        header = (
            asked
            if asked is not None
            else bool(rows) and all(isinstance(v, str) and v.strip() for v in rows[0])
        )
        if header and rows:
            self.names = _names(rows[0], self.sheet or "")
            self._rows = rows[1:]
            self._first_line = 2
        else:
            self.names = [f"column_{i + 1}" for i in range(width)]
            self._rows = rows
            self._first_line = 1
        check_forced_columns(options.get("column_types") or {}, self.names, sheet=self.sheet)
        self._columns = []
        self._types = []
        self._nulls = []
        for j, values in enumerate(zip(*self._rows, strict=True) if self._rows else [()] * width):
            arr, kind = _column(list(values), forced.get(self.names[j]), self, j)
            self._columns.append(arr)
            self._types.append(kind)
            self._nulls.append(arr.null_count > 0)
        self._nrows = len(self._rows)
        self.rows = 0
        self.dialect = {
            "format": "excel",
            "sheet": self.sheet,
            "header": bool(header),
        }

    def types(self) -> list[str]:
        return list(self._types)

    def nullable(self) -> list[bool]:
        return list(self._nulls)

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, list[pa.Array | None]]]:
        size = self.path.stat().st_size
        total = max(self._nrows, 1)
        for start in range(0, self._nrows, BATCH_ROWS):
            arrays: list[pa.Array | None] = [c.slice(start, BATCH_ROWS) for c in self._columns]
            batch = pa.RecordBatch.from_arrays(arrays, names=self.names)  # type: ignore[arg-type]
            self.rows += batch.num_rows
            self.on_bytes(size * min(start + BATCH_ROWS, total) // total)
            yield batch, arrays

    def bad_value(self, j: int, kind: str) -> ImportFailed:
        for k, r in enumerate(self._rows):
            v = r[j]
            if v is None or v == "":
                continue
            try:
                if kind in _ARROW:
                    _value(v, kind)
                elif convert(pa.array([_text(v)], pa.large_string()), kind) is None:
                    raise ValueError(kind)
            except (TypeError, ValueError):
                return ImportFailed(
                    f"column {self.names[j]!r} is declared {kind}, but row {k + 1} of sheet "
                    f"{self.sheet!r} holds {v!r}",
                    code="bad_value",
                    sheet=self.sheet,
                    line=self._first_line + k,
                    row=k + 1,
                    column=self.names[j],
                )
        return ImportFailed(f"column {self.names[j]!r} cannot be read as {kind}", code="bad_value")


def _column(
    values: list[Any], forced: str | None, src: ExcelSource, j: int
) -> tuple[pa.Array, str]:
    """One column's cells as an Arrow array of the narrowest type that fits every
    value (or the forced one). Arrow converts whole lists in C; Python touches
    single cells only for mixed columns and errors."""
    cells = [None if v == "" else v for v in values]
    if forced is not None and forced not in _ARROW:  # exact and nested types: from text
        text = pa.array([None if v is None else _text(v) for v in cells], pa.large_string())
        exact = convert(text, forced)
        if exact is None:
            raise src.bad_value(j, forced)
        return exact, forced
    if forced is not None:
        try:
            return pa.array(
                [None if v is None else _value(v, forced) for v in cells], _ARROW[forced]
            ), forced
        except (TypeError, ValueError, pa.ArrowInvalid, KeyError):
            raise src.bad_value(j, forced) from None
    try:
        arr = pa.array(cells)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        if all(v is None or isinstance(v, dt.date) for v in cells):  # dates with date-times
            return pa.array(
                [None if v is None else _value(v, "datetime") for v in cells], pa.timestamp("us")
            ), "datetime"
        return pa.array(
            [None if v is None else _text(v) for v in cells], pa.large_string()
        ), "string"
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(cells), pa.large_string()), "string"
    if pa.types.is_boolean(t):
        return arr, "boolean"
    if pa.types.is_integer(t):
        return pc.cast(arr, pa.int64()), "integer"
    if pa.types.is_floating(t):
        finite = pc.is_finite(arr)
        integral = pc.equal(pc.floor(arr), arr)
        small = pc.less(pc.abs(arr), float(_INT64))
        if pc.all(pc.and_(pc.and_(finite, integral), small), min_count=0).as_py():
            return pc.cast(arr, pa.int64()), "integer"
        return arr, "float"
    if pa.types.is_date(t):
        return pc.cast(arr, pa.date32()), "date"
    if pa.types.is_timestamp(t):
        return pc.cast(arr, pa.timestamp("us")), "datetime"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(arr, pa.large_string()), "string"
    return pa.array([None if v is None else _text(v) for v in cells], pa.large_string()), "string"


# A header cell fastexcel turned into a name that a number, boolean, date or
# time could have become: whether the cell was text is unknown, so the sheet
# goes the cell-by-cell way.
_NOT_PLAIN_TEXT = re.compile(r"[\d\s.,:/+\-eETZPHMSDW]*|true|false|nan|inf|-?infinity", re.I)


def _read_fast(
    path: Path, sheet: str | None, header: bool | None, forced: dict[str, str]
) -> tuple[str, list[str], list[pa.Array], list[str], bool] | None:
    """The sheet through fastexcel: (sheet name, names, columns, kinds, header),
    or None when only the cell-by-cell reader gives the exact result."""
    try:
        reader = fastexcel.read_excel(str(path))
        want: int | str = sheet if sheet is not None else 0
        first = _load(reader, want, header_row=None if header is False else 0)
        if first is None:
            return None
        name, batch, infos = first
        decided: bool | None = header
        if header is None:
            # a header when every cell of the first row is non-empty text
            decided = all(i.column_name_from == "looked_up" for i in infos)
            if decided and any(_NOT_PLAIN_TEXT.fullmatch(i.name) for i in infos):
                decided = None  # "2024" as text, or a number? the cells' kinds tell
            if not decided:
                again = _load(reader, want, header_row=None)
                if again is None:
                    return None
                name, batch, infos = again
            if decided is None:
                top = [c[0].as_py() if len(c) else None for c in batch.columns]
                decided = all(
                    pa.types.is_string(c.type) and isinstance(v, str) and v.strip()
                    for c, v in zip(batch.columns, top, strict=True)
                )
                if decided:  # every first cell is text: the header after all
                    names = _names(top, name)
                    return _typed(name, names, batch.slice(1), forced, header=True)
        header = decided
    except (fastexcel.FastExcelError, pa.ArrowException, OSError):
        return None  # the cell-by-cell reader says what is wrong
    if header:
        if any(i.column_name_from != "looked_up" for i in infos):
            return None  # a blank header cell: the other reader explains
        raw = [i.name for i in infos]
        if any(_NOT_PLAIN_TEXT.fullmatch(n) for n in raw):
            return None
        if any(re.fullmatch(r"(.*)_\d+", n) and re.sub(r"_\d+$", "", n) in raw for n in raw):
            return None  # fastexcel may have renamed a repeated name
        names = _names(raw, name)
    else:
        names = [f"column_{i + 1}" for i in range(batch.num_columns)]
    return _typed(name, names, batch, forced, header=bool(header))


def _typed(
    name: str, names: list[str], batch: pa.RecordBatch, forced: dict[str, str], *, header: bool
) -> tuple[str, list[str], list[pa.Array], list[str], bool] | None:
    columns, kinds = [], []
    for j, arr in enumerate(batch.columns):
        got = _fast_column(arr)
        if got is None:
            return None
        if names[j] in forced and forced[names[j]] != got[1]:
            return None  # forced types are checked value by value over there
        columns.append(got[0])
        kinds.append(got[1])
    return name, names, columns, kinds, header


def _load(
    reader: Any, want: int | str, *, header_row: int | None
) -> tuple[str, pa.RecordBatch, list[Any]] | None:
    """One load of the sheet (every cell typed, no column of mixed kinds), with
    trailing empty rows and columns dropped; None when a column mixes kinds."""
    try:
        sheet = reader.load_sheet(
            want, header_row=header_row, schema_sample_rows=None, dtype_coercion="strict"
        )
    except fastexcel.UnsupportedColumnTypeCombinationError:
        return None
    infos = list(sheet.available_columns())
    batch = sheet.to_arrow()
    cols = [_blank_to_null(c) for c in batch.columns]
    # trailing columns with no cell at all (no header either) are dropped
    width = len(cols)
    while (
        width
        and cols[width - 1].null_count == len(cols[width - 1])
        and (header_row is None or infos[width - 1].column_name_from != "looked_up")
    ):
        width -= 1
    cols, infos = cols[:width], infos[:width]
    height = 0
    for c in cols:  # trailing rows with no value are dropped
        valid = pc.indices_nonzero(pc.is_valid(c))
        if len(valid):
            height = max(height, valid[-1].as_py() + 1)
    names = [f"c{i}" for i in range(width)]
    out = pa.RecordBatch.from_arrays([c.slice(0, height) for c in cols], names=names)
    return sheet.name, out, infos


def _blank_to_null(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
    return arr


def _fast_column(arr: pa.Array) -> tuple[pa.Array, str] | None:
    """A fastexcel column in DSA's kinds, by the rules of ``_column``."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.large_string()), "string"
    if pa.types.is_boolean(t):
        return arr, "boolean"
    if pa.types.is_integer(t):
        return pc.cast(arr, pa.int64()), "integer"
    if pa.types.is_floating(t):
        arr = pc.cast(arr, pa.float64())
        finite = pc.is_finite(arr)
        integral = pc.equal(pc.floor(arr), arr)
        small = pc.less(pc.abs(arr), float(_INT64))
        if pc.all(pc.and_(pc.and_(finite, integral), small), min_count=0).as_py():
            return pc.cast(arr, pa.int64()), "integer"
        return arr, "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(arr, pa.large_string()), "string"
    if pa.types.is_date(t):
        return pc.cast(arr, pa.date32()), "date"
    if pa.types.is_timestamp(t) and t.tz is None:
        # calamine gives a date for a cell at midnight, else a date-time
        us = pc.cast(arr, pa.timestamp("us"))
        if pc.all(pc.equal(pc.floor_temporal(us, unit="day"), us), min_count=0).as_py():
            return pc.cast(us, pa.date32()), "date"
        return us, "datetime"
    return None  # durations, times: as text, cell by cell


def _trim(rows: list[list[Any]]) -> list[list[Any]]:
    """Drop trailing empty rows and columns (calamine's rows are rectangular)."""

    def empty(v: Any) -> bool:
        return v is None or v == ""

    while rows and all(empty(v) for v in rows[-1]):
        rows.pop()
    width = max((len(r) for r in rows), default=0)
    full = width
    while width and all(empty(r[width - 1]) for r in rows if len(r) >= width):
        width -= 1
    if width == full and all(len(r) == width for r in rows):
        return rows
    return [(r + [""] * (width - len(r)))[:width] for r in rows]


def _names(row: list[Any], sheet: str) -> list[str]:
    names: list[str] = []
    for i, v in enumerate(row):
        name = _text(v).strip()
        if not name:
            raise ImportFailed(
                f"column {i + 1} of the header of sheet {sheet!r} has no name",
                code="blank_column_name",
                sheet=sheet,
                line=1,
                column=i + 1,
            )
        if name in names:
            raise ImportFailed(
                f"the header of sheet {sheet!r} names column {name!r} twice",
                code="duplicate_column_name",
                sheet=sheet,
                line=1,
                column=i + 1,
            )
        names.append(name)
    return names
