"""A streaming xlsx writer: sheet XML built column-wise with Arrow kernels and
deflated into a zip written front to back, so the first bytes leave before
the last row is read and memory stays at one batch.

Why not xlsxwriter (even in ``constant_memory`` mode): it writes every cell
through Python (~1 µs each, so ~15 s for 12M cells) and assembles the zip
only when the workbook is closed, so nothing can be sent until the end.

What is written:

- one sheet per 1,048,575 rows (Excel's limit is 1,048,576 rows including the
  header row): a table past that continues on sheets ``name (2)``, ``name (3)``
  … each starting with the header row;
- text as inline strings (no shared-string table, so nothing is held back);
  control characters that XML cannot carry as ``_xHHHH_`` (the OOXML escape);
  cells longer than Excel's 32,767 characters are cut there;
- integers and finite floats as numbers; integers beyond ±2^53 (Excel holds
  numbers as doubles) and NaN / ±infinity as text (``"NaN"``, ``"Infinity"``);
- booleans as booleans; dates and datetimes as Excel serial numbers with a
  ``yyyy-mm-dd`` / ``yyyy-mm-dd hh:mm:ss.000`` format, zoned ones in UTC;
  dates before 1900-03-01 (where Excel's calendar is wrong) as ISO text;
- binary as base64 text;
- decimals as numbers formatted to their scale (``0.00``), or as exact text
  beyond 15 digits (Excel's numbers are doubles); times as fractions of a day
  (``hh:mm:ss.000``), durations as days (``[h]:mm:ss.000``); lists and structs
  as JSON text.

Cells carry no ``r`` reference: rows and cells follow each other, nulls are
empty ``<c/>`` elements (readers, Excel included, count positions).
"""

from __future__ import annotations

import re
import zipfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.exports.formats import _Sink, base64, json_text, neutralise, neutralise_name

SHEET_ROWS = 1_048_575  # data rows per sheet; +1 header row = Excel's limit
MAX_CELL_CHARS = 32_767
_SAFE_INT = 2**53
_EPOCH_SERIAL = 25_569  # Excel serial of 1970-01-01
_MIN_SERIAL_DAYS = -25_508  # 1900-03-01 in days since 1970-01-01
_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_")
_XML_BAD_ARROW = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{fffe}\x{ffff}]|_x[0-9A-Fa-f]{4}_"
_ZIP64_OVER = 3 * 1024**3  # force zip64 for a sheet expected past this many bytes

_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    b"<sheetData>"
)
_TAIL = b"</sheetData></worksheet>"
# number formats and cell styles: 1 date, 2 datetime, 3 bold header, then a
# style per decimal scale 0-15 (``_DECIMAL_STYLE + scale``), time, duration
_DECIMAL_STYLE = 4
_MAX_NUMBER_SCALE = 15
_TIME_STYLE = _DECIMAL_STYLE + _MAX_NUMBER_SCALE + 1
_DURATION_STYLE = _TIME_STYLE + 1
_FORMATS = [
    "yyyy\\-mm\\-dd",
    "yyyy\\-mm\\-dd\\ hh:mm:ss.000",
    *("0" + ("." + "0" * k if k else "") for k in range(_MAX_NUMBER_SCALE + 1)),
    "hh:mm:ss.000",
    "[h]:mm:ss.000",
]


def _xf(fmt: int) -> str:
    return (
        f'<xf numFmtId="{fmt}" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    )


_XFS = [
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>',
    _xf(164),
    _xf(165),
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>',
    *(_xf(166 + k) for k in range(len(_FORMATS) - 2)),
]
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">\n'
    f'<numFmts count="{len(_FORMATS)}">'
    + "".join(f'<numFmt numFmtId="{164 + i}" formatCode="{f}"/>' for i, f in enumerate(_FORMATS))
    + "</numFmts>\n"
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>\n'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>\n'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\n'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>\n'
    f'<cellXfs count="{len(_XFS)}">' + "".join(_XFS) + "</cellXfs>\n"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>\n'
    "</styleSheet>"
).encode()
_RELS = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\
<Relationship Id="rId1" \
Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" \
Target="xl/workbook.xml"/></Relationships>"""

_STR_OPEN = '<c t="inlineStr"><is><t xml:space="preserve">'
_STR_CLOSE = "</t></is></c>"


def _lit(s: str) -> pa.Scalar:
    return pa.scalar(s, pa.large_string())


def _escape_text(arr: pa.Array) -> pa.Array:
    """XML text: & < > escaped; characters XML cannot hold as ``_xHHHH_``."""
    arr = pc.cast(arr, pa.large_string())
    longest = pc.max(pc.utf8_length(arr)).as_py() if len(arr) else None
    if longest is not None and longest > MAX_CELL_CHARS:
        arr = pc.utf8_slice_codeunits(arr, 0, MAX_CELL_CHARS)
    if len(arr) and pc.any(pc.match_substring_regex(arr, _XML_BAD_ARROW)).as_py():
        arr = pa.array(
            [None if v is None else _XML_BAD.sub(_ooxml_escape, v) for v in arr.to_pylist()],
            pa.large_string(),
        )
    arr = pc.replace_substring(arr, "&", "&amp;")
    arr = pc.replace_substring(arr, "<", "&lt;")
    return pc.replace_substring(arr, ">", "&gt;")


def _ooxml_escape(m: re.Match[str]) -> str:
    s = m.group(0)
    if s.startswith("_x"):  # a literal "_x0041_" would read back as "A": escape its "_"
        return "_x005F_" + s[1:]
    return f"_x{ord(s):04X}_"


def _text_cells(arr: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(
        _lit(_STR_OPEN), _escape_text(arr), _lit(_STR_CLOSE), _lit("")
    )


def _number_cells(text: pa.Array, style: str = "") -> pa.Array:
    return pc.binary_join_element_wise(_lit(f"<c{style}><v>"), text, _lit("</v></c>"), _lit(""))


def cells(arr: pa.Array, kind: str, *, raw: bool) -> pa.Array:
    """Each value of a column as one ``<c>`` element (nulls: ``<c/>``)."""
    if kind in ("string", "binary"):
        text = base64(arr) if kind == "binary" else arr
        out = _text_cells(text if raw else neutralise(text))
    elif kind == "integer":
        out = _number_cells(pc.cast(arr, pa.large_string()))
        big = pc.greater(pc.abs(arr), _SAFE_INT)
        if pc.any(big).as_py():
            out = pc.if_else(big, _text_cells(pc.cast(arr, pa.large_string())), out)
    elif kind == "float":
        finite = pc.is_finite(arr)
        out = _number_cells(pc.cast(arr, pa.large_string()))
        if not pc.all(pc.or_kleene(finite, pc.is_null(arr))).as_py():
            words = pc.if_else(
                pc.is_nan(arr),
                _lit("NaN"),
                pc.if_else(pc.greater(arr, 0), _lit("Infinity"), _lit("-Infinity")),
            )
            out = pc.if_else(finite, out, _text_cells(words))
    elif kind == "boolean":
        out = pc.if_else(arr, _lit('<c t="b"><v>1</v></c>'), _lit('<c t="b"><v>0</v></c>'))
    elif kind == "date":
        days = pc.cast(arr, pa.int32()).cast(pa.int64())
        out = _number_cells(pc.cast(pc.add(days, _EPOCH_SERIAL), pa.large_string()), ' s="1"')
        early = pc.less(days, _MIN_SERIAL_DAYS)
        if pc.any(early).as_py():
            out = pc.if_else(early, _text_cells(pc.cast(arr, pa.large_string())), out)
    elif kind in ("datetime", "datetime_tz"):
        micros = pc.cast(arr, pa.int64())
        serial = pc.add(pc.divide(pc.cast(micros, pa.float64()), 86_400e6), float(_EPOCH_SERIAL))
        out = _number_cells(pc.cast(serial, pa.large_string()), ' s="2"')
        early = pc.less(micros, _MIN_SERIAL_DAYS * 86_400_000_000)
        if pc.any(early).as_py():
            text = pc.strftime(arr, "%Y-%m-%dT%H:%M:%S")
            out = pc.if_else(early, _text_cells(text), out)
    else:
        out = _exact_cells(arr, kind, raw=raw)
    return pc.fill_null(out, _lit("<c/>"))


def _exact_cells(arr: pa.Array, kind: str, *, raw: bool) -> pa.Array:
    """Decimals as numbers in their scale's format (as exact text beyond 15
    digits, which Excel's doubles would round), times as fractions of a day,
    durations as days in ``[h]:mm:ss``; lists and structs as JSON text."""
    t = arr.type
    if pa.types.is_decimal(t):
        text = pc.cast(arr, pa.large_string())
        if t.precision <= _MAX_NUMBER_SCALE:
            return _number_cells(text, f' s="{_DECIMAL_STYLE + t.scale}"')
        return _text_cells(text)
    if pa.types.is_time(t) or pa.types.is_duration(t):
        micros = pc.cast(arr, pa.int64())
        days = pc.divide(pc.cast(micros, pa.float64()), 86_400e6)
        style = _TIME_STYLE if pa.types.is_time(t) else _DURATION_STYLE
        return _number_cells(pc.cast(days, pa.large_string()), f' s="{style}"')
    text = json_text(arr)
    return _text_cells(text if raw else neutralise(text))


def _rows_xml(parts: list[pa.Array]) -> bytes:
    rows = pc.binary_join_element_wise(_lit("<row>"), *parts, _lit("</row>"), _lit(""))
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    # a string array's values are one buffer: the rows' XML back to back
    _, offsets, data = rows.buffers()
    off = np.frombuffer(offsets, dtype=np.int64, count=len(rows) + 1, offset=rows.offset * 8)
    start, end = int(off[0]), int(off[-1])
    return data.slice(start, end - start).to_pybytes()  # type: ignore[no-any-return]


class XlsxEncoder:
    def __init__(
        self, schema: pa.Schema, kinds: list[str], *, sheet: str, raw: bool = False
    ) -> None:
        self.names = schema.names
        self.kinds = kinds
        self.raw = raw
        self.base = _sheet_name(sheet)
        self.sink = _Sink()
        self.zip = zipfile.ZipFile(self.sink, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        self.sheets: list[str] = []
        self.entry: Any = None
        self.rows_in_sheet = 0

    def _header(self) -> bytes:
        names = self.names if self.raw else [neutralise_name(n) for n in self.names]
        cells_ = _text_cells(pa.array(names, pa.large_string()))
        cells_ = pc.replace_substring(cells_, "<c t=", '<c s="3" t=')
        return b"<row>" + b"".join(c.as_py().encode() for c in cells_) + b"</row>"

    def _open_sheet(self, estimate: int) -> None:
        n = len(self.sheets) + 1
        self.sheets.append(self.base if n == 1 else _sheet_name(self.base, n))
        info = zipfile.ZipInfo(f"xl/worksheets/sheet{n}.xml", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        self.entry = self.zip.open(info, "w", force_zip64=estimate > _ZIP64_OVER)
        self.entry.write(_HEAD + self._header())
        self.rows_in_sheet = 0

    def _close_sheet(self) -> None:
        self.entry.write(_TAIL)
        self.entry.close()
        self.entry = None

    def begin(self) -> bytes:
        return b""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        offset = 0
        while offset < batch.num_rows:
            if self.entry is not None and self.rows_in_sheet >= SHEET_ROWS:
                self._close_sheet()
            room = SHEET_ROWS - (self.rows_in_sheet if self.entry is not None else 0)
            part = batch.slice(offset, room)
            xml = _rows_xml(
                [cells(part.column(i), k, raw=self.raw) for i, k in enumerate(self.kinds)]
            )
            if self.entry is None:
                self._open_sheet(len(xml) * SHEET_ROWS // max(part.num_rows, 1))
            self.entry.write(xml)
            self.rows_in_sheet += part.num_rows
            offset += part.num_rows
        return self.sink.drain()

    def end(self) -> bytes:
        if self.entry is None and not self.sheets:
            self._open_sheet(0)
        if self.entry is not None:
            self._close_sheet()
        self._write("xl/styles.xml", _STYLES)
        self._write("xl/workbook.xml", self._workbook())
        self._write("xl/_rels/workbook.xml.rels", self._workbook_rels())
        self._write("_rels/.rels", _RELS)
        self._write("[Content_Types].xml", self._content_types())
        self.zip.close()
        return self.sink.drain()

    def _write(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)

    def _workbook(self) -> bytes:
        sheets = "".join(
            f'<sheet name="{_attr(name)}" sheetId="{i}" r:id="rId{i}"/>'
            for i, name in enumerate(self.sheets, 1)
        )
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            f"<sheets>{sheets}</sheets></workbook>"
        ).encode()

    def _workbook_rels(self) -> bytes:
        base = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{base}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, len(self.sheets) + 1)
        )
        n = len(self.sheets) + 1
        rels += f'<Relationship Id="rId{n}" Type="{base}/styles" Target="styles.xml"/>'
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f"{rels}</Relationships>"
        ).encode()

    def _content_types(self) -> bytes:
        ml = "application/vnd.openxmlformats-officedocument.spreadsheetml"
        sheets = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{ml}.worksheet+xml"/>'
            for i in range(1, len(self.sheets) + 1)
        )
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ml}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{ml}.styles+xml"/>'
            f"{sheets}</Types>"
        ).encode()


def _sheet_name(name: str, n: int = 1) -> str:
    """A valid sheet name: no ``[]:*?/\\``, at most 31 characters, unique suffix."""
    clean = re.sub(r"[\[\]:*?/\\]", "_", name).strip("'") or "data"
    suffix = f" ({n})" if n > 1 else ""
    return clean[: 31 - len(suffix)] + suffix


def _attr(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
