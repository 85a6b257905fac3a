from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from features.imports.csv_reader import CsvSource, ImportFailed, read_csv


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
        (b"a,b\n1,2\n3,\xff\n", "invalid_encoding", 3),
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
