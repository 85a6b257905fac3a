from __future__ import annotations

import bz2
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import zstandard

from features.imports.csv_reader import CsvSource
from features.imports.errors import ImportFailed


@dataclass
class Read:
    """A whole file read: its names, final types, row count and dialect."""

    names: list[str]
    types: list[str]
    rows: int
    dialect: dict[str, Any]


def read_csv(
    path: Path, *, options: dict[str, Any], fmt: str, on_bytes: Callable[[int], None]
) -> Read:
    src = CsvSource(path, options=options, fmt=fmt, on_bytes=on_bytes)
    for _ in src:
        pass
    return Read(src.names, src.types(), src.rows, src.dialect)


def _read(tmp_path: Path, content: bytes, **options: Any) -> Any:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    seen: list[int] = []
    result = read_csv(src, options=options, fmt="csv", on_bytes=seen.append)
    assert seen and seen[-1] == len(content)
    return result


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "+3"], "integer"),
        (["007", "12"], "string"),  # leading zeros stay text (zip codes, ids)
        (["99999999999999999999", "1"], "string"),  # beyond int64: exact text, never a float
        (["1.5", "2", "1e3", "NaN", "-inf"], "float"),
        (["true", "FALSE", "True"], "boolean"),
        (["2024-01-31", "1999-12-01"], "date"),
        (["2024-02-30"], "string"),
        (["2024-01-31T10:00:00", "2024-01-31 10:00:00.123456"], "datetime"),
        (["2024-01-31T10:00:00Z", "2024-01-31T10:00:00+02:00"], "datetime_tz"),
        (["2024-01-31T10:00:00Z", "2024-01-31T10:00:00"], "string"),
        (["1", "x"], "string"),
        (["", ""], "string"),  # all null
    ],
)
def test_type_inference_uses_every_value(tmp_path: Path, values: list[str], expected: str) -> None:
    content = ("c\n" + "\n".join(values) + "\n").encode()
    assert _read(tmp_path, content).types == [expected]


def test_type_inference_sees_the_last_block(tmp_path: Path) -> None:
    rows = [str(i) for i in range(400_000)] + ["n/a"]
    content = ("c\n" + "\n".join(rows) + "\n").encode()
    p1 = _read(tmp_path, content)
    assert p1.types == ["string"] and p1.rows == 400_001


def _rows(tmp_path: Path, content: bytes, **options: Any) -> pa.Table:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    batches = [t for t, _ in CsvSource(src, options=options, fmt="csv", on_bytes=print)]
    return pa.Table.from_batches(batches)


def test_nulls_and_empty_strings(tmp_path: Path) -> None:
    table = _rows(tmp_path, b'a,b\n,""\nNA,x\n', null_values=["", "NA"])
    assert table.column("a").to_pylist() == [None, None]
    assert table.column("b").to_pylist() == ["", "x"]


def test_dialect_detection_and_options(tmp_path: Path) -> None:
    p1 = _read(tmp_path, b"a;b\n1;2\n")
    assert p1.names == ["a", "b"] and p1.dialect["delimiter"] == ";"
    p1 = _read(tmp_path, b"junk line\n1|2\n", delimiter="|", header=False, skip_rows=1)
    assert p1.names == ["column_1", "column_2"] and p1.rows == 1
    p1 = _read(tmp_path, b"a,b\n1,2\n", column_types={"a": "string"})
    assert p1.types == ["string", "integer"]


@pytest.mark.parametrize(
    ("content", "code", "line"),
    [
        (b"", "empty_file", 1),
        (b'a,b\n1,2\n"multi\nline",3\n4,5,6\n', "ragged_row", 5),
        (b"a,b\n\x00\x01\x02", "binary_file", 2),
        (b"a,a\n1,2\n", "duplicate_column_name", 1),
        (b"a, \n1,2\n", "blank_column_name", 1),
    ],
)
def test_bad_files_name_cause_and_line(
    tmp_path: Path, content: bytes, code: str, line: int
) -> None:
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, content)
    assert exc.value.code == code
    assert exc.value.extra["line"] == line


def test_latin1_with_encoding_option(tmp_path: Path) -> None:
    table = _rows(tmp_path, "a\ncafé\n".encode("latin-1"), encoding="latin-1")
    assert table.column("a").to_pylist() == ["café"]


def test_forced_type_for_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, b"a\n1\n", column_types={"zz": "integer"})
    assert exc.value.code == "unknown_column"


def test_an_unterminated_quote_is_an_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, b'a,b\n1,2\n3,"never closed\n4,5\n6,7\n')
    assert exc.value.code == "unterminated_quote" and exc.value.extra["line"] == 3
    # a literal quote inside an unquoted field is fine
    p1 = _read(tmp_path, b'a,b\n1,5" pipe\n2,x\n')
    assert p1.rows == 2


COMPRESSORS = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_compressed_files_read_like_plain_ones(tmp_path: Path, codec: str) -> None:
    plain = b"a,b\n" + b"".join(b'%d,"x, %d"\n' % (i, i) for i in range(200_000))
    packed = COMPRESSORS[codec](plain)
    src = tmp_path / "in.csv"
    src.write_bytes(packed)
    seen: list[int] = []
    p1 = read_csv(src, options={}, fmt="csv", on_bytes=seen.append)
    assert p1.rows == 200_000 and p1.types == ["integer", "string"]
    assert p1.dialect["compression"] == codec
    assert seen[-1] == len(packed)  # progress counts the file's own bytes


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_truncated_compressed_files_fail(tmp_path: Path, codec: str) -> None:
    plain = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * 7919 % 1000) for i in range(300_000))
    packed = COMPRESSORS[codec](plain)
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, packed[: len(packed) * 2 // 3])
    assert exc.value.code == "corrupt_compressed_file"
    assert "truncated" in exc.value.detail


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_a_compression_bomb_stops_at_the_limit(
    tmp_path: Path, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that inflates past DSA_MAX_DECOMPRESSED_BYTES fails saying so,
    having produced no more than the limit (it failed before: read it all)."""
    from core.config import get_settings

    monkeypatch.setattr(get_settings(), "max_decompressed_bytes", 5_000_000)
    plain = b"a,b\n" + b"1,2\n" * 4_000_000  # 16 MB of text, a few KB packed
    packed = COMPRESSORS[codec](plain)
    assert len(packed) < 200_000
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, packed)
    assert exc.value.code == "too_large" and exc.value.extra["limit"] == 5_000_000
    assert "DSA_MAX_DECOMPRESSED_BYTES" in exc.value.detail


def test_bad_utf8_line_is_exact_across_blocks(tmp_path: Path) -> None:
    rows = "".join(f"{i},é{i}\n" for i in range(300_000)).encode()  # 2-byte chars everywhere
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, b"a,b\n" + rows + b"1,\xff\n")
    assert exc.value.code == "invalid_encoding" and exc.value.extra["line"] == 300_002


def test_compressed_names_are_csv() -> None:
    from features.imports.formats import detect_format

    assert detect_format("x.csv.gz", {}) == "csv"
    assert detect_format("x.tsv.zst", {}) == "tsv"
    assert detect_format("x.gz", {}) == "csv"
    assert detect_format("x.xlsx.gz", {}) is None


def test_encodings_are_detected(tmp_path: Path) -> None:
    text = "name,city\nZoë,Malmö\nJosé,São Paulo\n"
    for data, expected in (
        (text.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + text.encode("utf-8"), "utf-8"),
        (text.encode("utf-16"), "utf-16"),
        (text.encode("cp1252"), "cp1252"),
        ("a\nZoë €\n".encode("cp1252"), "cp1252"),
    ):
        src = tmp_path / "in.csv"
        src.write_bytes(data)
        p1 = read_csv(src, options={}, fmt="csv", on_bytes=lambda n: None)
        assert p1.dialect["encoding"] == expected and p1.dialect["encoding_detected"]
        rows = _rows(tmp_path, data)
        assert rows.num_rows >= 1
    assert _rows(tmp_path, text.encode("utf-16")).column("city").to_pylist() == [
        "Malmö",
        "São Paulo",
    ]
    assert _rows(tmp_path, b"\xef\xbb\xbfa\n1\n").column_names == ["a"]


def test_declared_utf8_that_is_not_fails_with_the_line(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, b"a,b\n1,2\n3,\x81\n", encoding="utf-8")
    assert exc.value.code == "invalid_encoding" and exc.value.extra["line"] == 3


@pytest.mark.parametrize(
    ("content", "header", "names"),
    [
        (b"1,2,3\n4,5,6\n", False, ["column_1", "column_2", "column_3"]),
        (b"2024-01-01,3.5\n2024-01-02,4.25\n", False, ["column_1", "column_2"]),
        (b"id,score\n1,2.5\n", True, ["id", "score"]),
        (b"a,b\nx,y\n", True, ["a", "b"]),  # all text: nothing tells, so a header
        (b"1,x\n2,y\n", False, ["column_1", "column_2"]),
        (b"year,2024\n1,2\n", True, ["year", "2024"]),
        (b"a,b\n", True, ["a", "b"]),
    ],
)
def test_header_presence_is_detected(
    tmp_path: Path, content: bytes, header: bool, names: list[str]
) -> None:
    p1 = _read(tmp_path, content)
    assert p1.dialect["header"] is header and p1.names == names


def test_header_option_overrides_detection(tmp_path: Path) -> None:
    p1 = _read(tmp_path, b"1,2\n3,4\n", header=True)
    assert p1.names == ["1", "2"] and p1.rows == 1


ALIGNED = b"""  station   temp_c   rain_mm  date
  OSL1       -3.5      0.0    2024-01-01
  BER2        4.25     12.5   2024-01-02
  MAD3       11.0       0.2   2024-01-03
"""


def test_whitespace_aligned_tables(tmp_path: Path) -> None:
    p1 = _read(
        tmp_path,
        ALIGNED,
    )
    assert p1.dialect["delimiter"] == "whitespace"
    assert p1.names == ["station", "temp_c", "rain_mm", "date"]
    assert p1.types == ["string", "float", "float", "date"] and p1.rows == 3
    table = _rows(tmp_path, ALIGNED)
    assert table.column("station").to_pylist() == ["OSL1", "BER2", "MAD3"]
    # a one-column file with spaces in its values is not mistaken for one
    p1 = _read(tmp_path, b"full name\nAda Lovelace\nAlan Turing\n")
    assert p1.dialect["delimiter"] == "," and p1.names == ["full name"]
    # and the option can say so
    p1 = _read(tmp_path, b"a b\n1 2\n", delimiter="whitespace")
    assert p1.names == ["a", "b"] and p1.types == ["integer", "integer"]


def test_ragged_whitespace_table_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as exc:
        _read(tmp_path, b"a  b\n" + b"".join(b"%d  %d\n" % (i, i) for i in range(8)) + b"5  6  7\n")
    assert exc.value.code == "ragged_row" and exc.value.extra["line"] == 10
