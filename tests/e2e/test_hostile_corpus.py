"""A corpus of bad and hostile files. Each one ends in a failed job whose
problem names the cause (and the place where there is one), or in a
documented, correct import; never a worker crash, a hang, or a 500."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import random
import re
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from features.imports import csv_reader
from tests.conftest import import_csv, make_dataset


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _xlsx(rows: list[list[Any]]) -> bytes:
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _zip(members: dict[str, bytes], level: int = 6) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _xlsx_with_sheet_xml(xml: bytes) -> bytes:
    """A valid workbook whose first sheet's XML is replaced."""
    src = zipfile.ZipFile(io.BytesIO(_xlsx([["a"], [1]])))
    return _zip(
        {n: (xml if n == "xl/worksheets/sheet1.xml" else src.read(n)) for n in src.namelist()}
    )


def _tar_with_symlink() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("passwd.csv")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    return buf.getvalue()


BIG_CSV = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(50_000))
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
        for i in range(1, 10)
    )
    + b']><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    b"</sheetData></worksheet>"
)
SHEET_BOMB = (
    b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    + b" " * (60 * 1024 * 1024)
    + b"</sheetData></worksheet>"
)

# (name, file name, content, options, expected: ("failed", code, line) or ("ok", rows))
CORPUS: list[tuple[str, str, bytes, str | None, tuple[Any, ...]]] = [
    ("empty", "e.csv", b"", None, ("failed", "empty_file", 1)),
    ("header only", "h.csv", b"a,b\n", None, ("ok", 0)),
    ("blank lines only", "n.csv", b"\n\n\n", None, ("failed", "empty_file", 1)),
    ("ragged row", "r.csv", b"a,b\n1,2\n3,4,5\n", None, ("failed", "ragged_row", 3)),
    ("short row", "s.csv", b"a,b,c\n1,2,3\n4,5\n", None, ("failed", "ragged_row", 3)),
    ("unterminated quote", "q.csv", b'a,b\n1,"x\n2,3\n', None, ("failed", "unterminated_quote", 2)),
    (
        "declared utf-8, is not",
        "u.csv",
        b"a\n\xff\n",
        '{"encoding":"utf-8"}',
        ("failed", "invalid_encoding", 2),
    ),
    (
        "duplicate column names",
        "d.csv",
        b"a,b,a\n1,2,3\n",
        None,
        ("failed", "duplicate_column_name", 1),
    ),
    ("blank column name", "b.csv", b"a,,c\n1,2,3\n", None, ("failed", "blank_column_name", 1)),
    (
        "renamed PNG",
        "img.csv",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
        None,
        ("failed", "binary_file", 3),  # the first NUL byte is on line 3
    ),
    (
        "truncated gzip",
        "t.csv.gz",
        gzip.compress(BIG_CSV)[:5000],
        None,
        ("failed", "corrupt_compressed_file", None),
    ),
    (
        "truncated bz2",
        "t.csv.bz2",
        bz2.compress(BIG_CSV)[:5000],
        None,
        ("failed", "corrupt_compressed_file", None),
    ),
    (
        "truncated zstd",
        "t.csv.zst",
        zstandard.ZstdCompressor().compress(BIG_CSV)[:5000],
        None,
        ("failed", "corrupt_compressed_file", None),
    ),
    (
        "garbage zstd",
        "g.csv.zst",
        b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 4,
        None,
        ("failed", "corrupt_compressed_file", None),
    ),
    (
        "gzip of binary",
        "b.csv.gz",
        gzip.compress(bytes(range(256)) * 10),
        None,
        ("failed", "binary_file", 1),
    ),
    (
        "truncated parquet",
        "t.parquet",
        _parquet(pa.table({"a": list(range(1000))}))[:300],
        None,
        ("failed", "corrupt_parquet", None),
    ),
    ("CSV named parquet", "c.parquet", b"a,b\n1,2\n", None, ("failed", "corrupt_parquet", None)),
    (
        "empty parquet",
        "e.parquet",
        _parquet(pa.table({"a": pa.array([], pa.int64())})),
        None,
        ("ok", 0),
    ),
    ("CSV named xlsx", "c.xlsx", b"a,b\n1,2\n", None, ("failed", "corrupt_excel", None)),
    (
        "truncated xlsx",
        "t.xlsx",
        _xlsx([["a"], [1]])[:400],
        None,
        ("failed", "corrupt_excel", None),
    ),
    (
        "xlsx entity expansion",
        "x.xlsx",
        _xlsx_with_sheet_xml(BILLION_LAUGHS),
        None,
        ("failed", "corrupt_excel", None),
    ),
    (
        "xlsx zip bomb",
        "bomb.xlsx",
        _xlsx_with_sheet_xml(SHEET_BOMB),
        None,
        ("failed", "too_large", None),
    ),
    (
        "zip bomb",
        "bomb.zip",
        _zip({"big.csv": b"a\n" + b"0" * (30 * 1024 * 1024)}, 9),
        None,
        ("failed", "too_large", None),
    ),
    (
        "path traversal in a zip",
        "p.zip",
        _zip({"../../../tmp/evil.csv": b"a\n1\n"}),
        None,
        ("ok", 1),
    ),
    (
        "zip without tables",
        "n.zip",
        _zip({"readme.md": b"hi"}),
        None,
        ("failed", "empty_archive", None),
    ),
    (
        "tar with only a symlink",
        "l.tar",
        _tar_with_symlink(),
        None,
        ("failed", "empty_archive", None),
    ),
    ("corrupt zip", "c.zip", b"PK\x03\x04" + bytes(100), None, ("failed", "corrupt_archive", None)),
    (
        "100,000 columns",
        "wide.csv",
        (
            ",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join("1" * 100_000) + "\n"
        ).encode(),
        None,
        ("failed", "too_many_columns", 1),
    ),
    ("5 MB single field", "f.csv", b'a\n"' + b"x" * (5 * 1024 * 1024) + b'"\n', None, ("ok", 1)),
    ("CRLF and a BOM", "w.csv", b"\xef\xbb\xbfa,b\r\n1,2\r\n", None, ("ok", 1)),
    ("quotes inside quotes", "qq.csv", b'a\n"say ""hi"""\n', None, ("ok", 1)),
    (
        "value of a declared type that does not fit",
        "v.csv",
        b"a\nx\n",
        '{"column_types":{"a":"date"}}',
        ("failed", "bad_value", 2),
    ),
]


def _generated() -> list[tuple[str, str, bytes, str | None, tuple[Any, ...]]]:
    """Families of hostile files made by rule, each with its known outcome:
    compressed CSVs, Parquet files and workbooks cut at 20 places each, and
    text files broken at a chosen line (invalid UTF-8, a ragged row, an
    unterminated quote, a NUL byte, a duplicated or blank column name)."""
    out: list[tuple[str, str, bytes, str | None, tuple[Any, ...]]] = []
    packed = {
        "gz": gzip.compress(BIG_CSV),
        "bz2": bz2.compress(BIG_CSV),
        "zst": zstandard.ZstdCompressor().compress(BIG_CSV),
    }
    for ext, data in packed.items():
        for k in range(1, 21):
            cut = len(data) * k // 21
            out.append(
                (
                    f"{ext} cut at {k}/21",
                    f"t.csv.{ext}",
                    data[:cut],
                    None,
                    ("failed", "corrupt_compressed_file", None),
                )
            )
    parquet = _parquet(pa.table({"a": list(range(5000)), "b": [str(i) for i in range(5000)]}))
    workbook = _xlsx([["a", "b"], *[[i, f"v{i}"] for i in range(300)]])
    for k in range(1, 21):
        out.append(
            (
                f"parquet cut at {k}/21",
                "t.parquet",
                parquet[: len(parquet) * k // 21],
                None,
                ("failed", "corrupt_parquet", None),
            )
        )
        out.append(
            (
                f"xlsx cut at {k}/21",
                "t.xlsx",
                workbook[: len(workbook) * k // 21],
                None,
                ("failed", "corrupt_excel", None),
            )
        )
    body = [b"%d,%d" % (i, i * 7) for i in range(40)]
    for line in range(2, 17):  # the header is line 1; data rows from line 2
        rows = list(body)
        rows[line - 2] = b"%d,\xff\xfe" % line
        out.append(
            (
                f"invalid utf-8 on line {line}",
                "u.csv",
                b"a,b\n" + b"\n".join(rows) + b"\n",
                '{"encoding":"utf-8"}',
                ("failed", "invalid_encoding", line),
            )
        )
        rows = list(body)
        rows[line - 2] = b"%d,%d,extra" % (line, line)
        out.append(
            (
                f"ragged row on line {line}",
                "r.csv",
                b"a,b\n" + b"\n".join(rows) + b"\n",
                None,
                ("failed", "ragged_row", line),
            )
        )
        rows = list(body)
        rows[line - 2] = b'%d,"never closed' % line
        out.append(
            (
                f"unterminated quote on line {line}",
                "q.csv",
                b"a,b\n" + b"\n".join(rows) + b"\n",
                None,
                ("failed", "unterminated_quote", line),
            )
        )
        rows = list(body)
        rows[line - 2] = b"%d,\x00" % line
        out.append(
            (
                f"NUL byte on line {line}",
                "z.csv",
                b"a,b\n" + b"\n".join(rows) + b"\n",
                None,
                ("failed", "binary_file", line),
            )
        )
    for n in range(2, 7):
        header = b",".join([b"a"] * n)
        out.append(
            (
                f"{n} columns all named a",
                "d.csv",
                header + b"\n" + b",".join([b"1"] * n) + b"\n",
                None,
                ("failed", "duplicate_column_name", 1),
            )
        )
        header = b",".join([b"c%d" % i for i in range(n)] + [b""])
        out.append(
            (
                f"blank name after {n} columns",
                "k.csv",
                header + b"\n" + b",".join([b"1"] * (n + 1)) + b"\n",
                None,
                ("failed", "blank_column_name", 1),
            )
        )
    return out


BLOCK = csv_reader.BLOCK_BYTES
ROW = 32  # bytes of each row of ``_block_csv``: "%010d," + 20 letters + "\n"
HEAD = 48  # bytes of its header: the boundary falls 16 bytes into a row


def _block_csv(at: int, special: bytes) -> tuple[bytes, int]:
    """A CSV a little over one read block long, with ``special`` written over
    the letters from byte ``at`` of the file; and the line it is on. The
    header is ``HEAD`` bytes and each row ``ROW`` ("%010d," then 20 letters),
    so the block boundary falls inside a row's letters."""
    header = b"id,text" + b" " * (HEAD - 8) + b"\n"
    rows = bytearray(
        header + b"".join(b"%010d,%s\n" % (i, b"x" * 20) for i in range(BLOCK // ROW + 64))
    )
    inside = (at - HEAD) % ROW
    assert inside >= 11 and inside + len(special) <= 31, "inside the letters"
    rows[at : at + len(special)] = special
    return bytes(rows), (at - HEAD) // ROW + 2


def _boundaries() -> list[tuple[str, str, bytes, str | None, tuple[Any, ...]]]:
    """Text broken exactly at the CSV reader's block boundary (and beside
    it): an invalid byte fails on its line, a character split across two
    blocks is read whole."""
    out: list[tuple[str, str, bytes, str | None, tuple[Any, ...]]] = []
    utf8 = '{"encoding":"utf-8"}'
    for shift in (-2, -1, 0, 1, 2):
        at = BLOCK + shift
        body, line = _block_csv(at, b"\xff")
        out.append(
            (
                f"invalid byte at block boundary {shift:+d}",
                "u.csv",
                body,
                utf8,
                ("failed", "invalid_encoding", line),
            )
        )
        for label, char in (("2-byte", "é"), ("3-byte", "€"), ("4-byte", "𝄞")):
            raw = char.encode()
            body, _ = _block_csv(at - len(raw) // 2, raw)
            out.append(
                (
                    f"{label} character across block boundary {shift:+d}",
                    "s.csv",
                    body,
                    utf8,
                    ("ok", BLOCK // ROW + 64),
                )
            )
    return out


def _hostile_parquet() -> list[tuple[str, str, bytes, str | None, tuple[Any, ...]]]:
    """Parquet files whose metadata lies or is built to cost: footer lengths
    past the file, bytes of the footer changed (seeded), huge key-value
    metadata, thousands of row groups, deep nesting, hostile column names."""
    good = _parquet(pa.table({"a": list(range(2000)), "b": [f"v{i}" for i in range(2000)]}))
    footer = int.from_bytes(good[-8:-4], "little")
    out: list[tuple[str, str, bytes, str | None, tuple[Any, ...]]] = []
    for label, length in (("2 GiB", 2**31 - 1), ("past the file", len(good)), ("zero", 0)):
        bad = good[:-8] + length.to_bytes(4, "little") + b"PAR1"
        out.append(
            (
                f"parquet footer length {label}",
                "f.parquet",
                bad,
                None,
                ("failed", "corrupt_parquet", None),
            )
        )
    rng = random.Random(15)
    start = len(good) - 8 - footer
    for k in range(24):
        changed = bytearray(good)
        for _ in range(1 + k % 4):
            changed[rng.randrange(start, len(good) - 8)] = rng.randrange(256)
        out.append((f"parquet footer changed #{k}", "m.parquet", bytes(changed), None, ("any",)))
    table = pa.table({"a": [1, 2, 3]}).replace_schema_metadata({"pandas": "x" * (8 * 1024**2)})
    out.append(
        ("parquet with 8 MB of key-value metadata", "k.parquet", _parquet(table), None, ("ok", 3))
    )
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": list(range(5000))}), buf, row_group_size=1)
    out.append(("parquet with 5,000 row groups", "g.parquet", buf.getvalue(), None, ("ok", 5000)))
    nested: pa.Array = pa.array([1, 2])
    for depth in range(64):
        nested = pa.StructArray.from_arrays([nested], names=[f"n{depth}"])
    out.append(
        (
            "parquet nested 64 deep",
            "n.parquet",
            _parquet(pa.table({"deep": nested})),
            None,
            ("any",),
        )
    )
    dup = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    out.append(
        (
            "parquet with duplicate column names",
            "d.parquet",
            _parquet(dup),
            None,
            ("failed", "duplicate_column_name", None),
        )
    )
    named = pa.table({"a\x00b": [1, 2]})
    out.append(
        (
            "parquet column name with NUL",
            "c.parquet",
            _parquet(named),
            None,
            ("failed", "invalid_column_name", None),
        )
    )
    for label, name in (("empty", ""), ("1 MB", "c" * 1024**2)):
        named = pa.table({name: [1, 2]})
        out.append((f"parquet column name {label}", "c.parquet", _parquet(named), None, ("any",)))
    return out


def _encodings_and_archives() -> list[tuple[str, str, bytes, str | None, tuple[Any, ...]]]:
    """The same small table in every encoding a user sends (each imports
    whole), archives nested eight deep, and members with absolute paths."""
    text = "id,name\n1,Zoë\n2,naïve café\n3,Ελλάδα\n"
    out: list[tuple[str, str, bytes, str | None, tuple[Any, ...]]] = []
    for enc, declared in (
        ("utf-8", None),
        ("utf-8-sig", None),
        ("utf-16", None),  # with its byte-order mark
        ("utf-16-le", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
        ("cp1252", None),
        ("latin-1", None),
        ("cp1252", "windows-1252"),
        ("latin-1", "iso-8859-1"),
    ):
        western = enc in ("cp1252", "latin-1")
        body = text.replace("Ελλάδα", "Hellas") if western else text
        options = json.dumps({"encoding": declared}) if declared else None
        label = f"encoding {enc}" + (f" declared {declared}" if declared else "")
        out.append((label, "e.csv", body.encode(enc), options, ("ok", 3)))
    # an encoding DSA does not read: refused with a problem, never garbage
    out.append(("encoding utf-32, undeclared", "e.csv", text.encode("utf-32"), None, ("failed",)))
    inner = b"a\n1\n"
    name = "t.csv"
    for depth in range(1, 9):
        inner, name = _zip({name: inner}), f"level{depth}.zip"
    out.append(("zip nested 8 deep", "n.zip", inner, None, ("any",)))
    for member in ("/etc/evil.csv", "/tmp/../../abs.csv", "C:/windows/x.csv"):
        out.append(
            (f"absolute path {member} in a zip", "a.zip", _zip({member: b"a\n1\n"}), None, ("any",))
        )
    return out


GENERATED = _generated() + _boundaries() + _hostile_parquet() + _encodings_and_archives()


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) + len(GENERATED) >= 200
    assert len({c[0] for c in CORPUS + GENERATED}) == len(CORPUS) + len(GENERATED)


@pytest.mark.parametrize(
    ("label", "filename", "content", "options", "expected"),
    CORPUS + GENERATED,
    ids=[c[0] for c in CORPUS + GENERATED],
)
def test_hostile_file(
    http: httpx.Client,
    auth: dict[str, str],
    stack: dict[str, str],
    label: str,
    filename: str,
    content: bytes,
    options: str | None,
    expected: tuple[Any, ...],
) -> None:
    job_id = _check(http, auth, filename, content, options, expected)
    assert _peak_rss(stack, job_id) < PEAK_RSS_BOUND  # the worker's child stayed bounded


def _check(
    http: httpx.Client,
    auth: dict[str, str],
    filename: str,
    content: bytes,
    options: str | None,
    expected: tuple[Any, ...],
) -> str:
    """Import the file and check the outcome; the job's id."""
    ds = make_dataset(http, auth)["id"]
    fields = {"options": options} if options else {}
    job = import_csv(http, auth, ds, content, filename=filename, **fields)
    if expected[0] == "any":  # a problem that names its cause, or an import
        assert job["state"] in ("succeeded", "failed"), job
        if job["state"] == "succeeded":
            return str(job["id"])
        expected = ("failed", job["error"]["code"], None)
        assert job["error"]["code"] != "internal", job
    if expected[0] == "ok":
        assert job["state"] == "succeeded", job
        assert (
            job["result"].get("rows", sum(t["rows"] for t in job["result"].get("tables", [])))
            == expected[1]
        )
        return str(job["id"])
    assert job["state"] == "failed", job
    err = job["error"]
    if len(expected) == 1:  # failed, whatever the reason it names
        expected = ("failed", err["code"], None)
        assert err["code"] != "internal", err
    assert err["code"] == expected[1], err
    if expected[2] is not None:
        assert err["line"] == expected[2], err
    assert err["detail"] and "Traceback" not in err["detail"] and err["status"] < 500
    assert http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["total"] == 1
    return str(job["id"])


# the most an import child may use (RSS) on any file of the corpus: the
# worker's own pages it shares (~0.4 GB here) plus what the file needs
PEAK_RSS_BOUND = 2 * 1024**3


def _peak_rss(stack: dict[str, str], job_id: str) -> int:
    """The import child's peak RSS for a job, from the worker's log line."""
    log = Path(stack["DSA_HOME"]) / "worker.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in reversed(log.read_text(errors="replace").splitlines()):
            got = re.search(r'"peak_rss_bytes": (\d+)', line)
            if job_id in line and "import child ended" in line and got:
                return int(got.group(1))  # the line itself: other processes log to the file too
        time.sleep(0.1)
    raise AssertionError(f"no 'import child ended' line for job {job_id}")


def test_a_100_mb_field_fails_on_its_line_in_bounded_memory(
    http: httpx.Client, auth: dict[str, str], stack: dict[str, str]
) -> None:
    """A 100 MB field (compressed: the raw file is past the upload limit)
    ends in ``field_too_long`` naming its line, within bounded memory; a
    4 MB one (the most always read) imports."""
    big = b"x" * (100 * 1024**2)
    ds = make_dataset(http, auth)["id"]
    body = gzip.compress(b'id,text\n1,ok\n2,"' + big + b'"\n3,short\n', 1)
    job = import_csv(http, auth, ds, body, filename="f.csv.gz")
    assert job["state"] == "failed", job
    err = job["error"]
    assert (err["code"], err["line"], err["file"]) == ("field_too_long", 3, "f.csv.gz"), err
    assert "line 3 is longer than 4 MiB" in err["detail"], err
    assert _peak_rss(stack, job["id"]) < PEAK_RSS_BOUND
    assert http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["total"] == 1
    field = b"y" * (4 * 1024**2)
    job = import_csv(http, auth, ds, b'id,text\n1,"' + field + b'"\n', filename="g.csv")
    assert job["state"] == "succeeded", job.get("error")
    r = http.get(f"/api/v1/datasets/{ds}/refs/main/data", params={"limit": 1}, headers=auth)
    assert len(r.json()["rows"][0][1]) == len(field)
