"""Re-uploads read by lines (features/imports/lines.py, decision 0014).

The line path must give exactly the table a full import gives: each
scenario uploads the same two files into two datasets, with the line index of
the second dataset's branch removed before its re-upload (so it reads every
row), and compares the tables (schema and manifest ids) and the rows.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import import_csv, make_dataset
from tests.e2e.test_dedup import read_all


def table_of(http: httpx.Client, auth: dict[str, str], ds: str, commit: str) -> dict[str, Any]:
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{commit}", headers=auth).json()
    t = detail["tables"][0]
    return {"schema": t["schema_id"], "manifest": t["manifest_id"], "columns": t["columns"]}


def both_ways(
    http: httpx.Client,
    auth: dict[str, str],
    home: Path,
    v1: bytes,
    v2: bytes,
    filename: str = "data.csv",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the re-upload's job by lines, by a full import) after v1 in each."""
    out = []
    for by_lines in (True, False):
        ds = make_dataset(http, auth)["id"]
        first = import_csv(http, auth, ds, v1, filename=filename)
        assert first["state"] == "succeeded", first.get("error")
        if not by_lines:
            shutil.rmtree(home / "objects" / "lines", ignore_errors=True)
        job = import_csv(http, auth, ds, v2, filename=filename)
        assert job["state"] == "succeeded", job.get("error")
        job["dataset"] = ds
        if not job["result"].get("unchanged"):
            job["table"] = table_of(http, auth, ds, job["commit_id"])
            job["rows"] = read_all(http, auth, ds, job["commit_id"])
        out.append(job)
    return out[0], out[1]


def csv_lines(rows: list[str], header: str = "k,v,x") -> bytes:
    return (header + "\n" + "".join(r + "\n" for r in rows)).encode()


@pytest.fixture
def home(stack: dict[str, str]) -> Path:
    return Path(stack["DSA_HOME"])


def test_an_edited_file_parses_only_its_changed_lines(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    rows = [f"{i},value {i},{i / 4}" for i in range(5000)]
    edited = list(rows)
    for i in random.Random(5).sample(range(5000), 50):
        edited[i] = f"{i},changed {i},{i / 4}"
    edited.insert(100, "-1,new,0.5")
    del edited[4000]
    fast, full = both_ways(http, auth, home, csv_lines(rows), csv_lines(edited))
    assert fast["result"]["parsed_rows"] == 51
    assert "parsed_rows" not in full["result"]
    assert fast["table"] == full["table"]
    assert fast["rows"] == full["rows"]
    assert fast["rows"][100] == [-1, "new", 0.5]


def test_quotes_newlines_crlf_blank_lines_and_nulls_read_the_same(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    rows = [
        '1,"a, with comma",1.5',
        '2,"two\nlines",',
        '3,"say ""hi""",2',
        '4,plain""quote,3',
        '5,"",4',
        "6,,5",
        "",
        '7,"tail"ing,6',
    ] + [f"{i},v{i},{i}" for i in range(8, 400)]
    v1 = "\r\n".join(["k,v,x", *rows]).encode() + b"\r\n"
    edited = list(rows)
    edited[1] = '2,"two\nlines changed",'
    edited[3] = '4,plain""quote changed,3'
    edited.insert(10, '99,"new\r\nrow",9')
    v2 = "\r\n".join(["k,v,x", *edited]).encode() + b"\r\n"
    fast, full = both_ways(http, auth, home, v1, v2)
    assert fast["result"]["parsed_rows"] == 3
    assert fast["table"] == full["table"]
    assert fast["rows"] == full["rows"]
    assert fast["rows"][1] == [2, "two\nlines changed", None]
    assert fast["rows"][4] == [5, "", 4.0]


def test_duplicate_lines_pair_by_occurrence(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    rows = ["1,a,1", "1,a,1", "2,b,2", "1,a,1", "3,c,3"] * 200
    edited = list(rows)
    del edited[1]
    edited.insert(500, "1,a,1")
    edited[700] = "9,z,9"
    fast, full = both_ways(http, auth, home, csv_lines(rows), csv_lines(edited))
    assert fast["result"]["parsed_rows"] == 1
    assert fast["table"] == full["table"]
    assert fast["rows"] == full["rows"]


def test_a_value_that_no_longer_fits_reads_every_row_and_widens_the_type(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    rows = [f"{i},v{i},{i}" for i in range(1000)]
    edited = list(rows)
    edited[500] = "500,v500,n/a"
    fast, full = both_ways(http, auth, home, csv_lines(rows), csv_lines(edited))
    assert "parsed_rows" not in fast["result"]
    assert fast["table"] == full["table"]
    assert [c["type"] for c in fast["table"]["columns"]] == ["integer", "string", "string"]
    assert fast["rows"][500] == [500, "v500", "n/a"]


def test_a_re_upload_keeps_the_table_types_and_nullability_while_values_fit(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    """x was float (because of 2.5) and nullable (row 3); v2 drops both rows:
    every value still fits float, so x stays a nullable float, by lines or not."""
    rows = ["1,a,1", "2,b,2.5", "3,c,"] + [f"{i},v,{i}" for i in range(4, 300)]
    edited = [r for r in rows if r not in ("2,b,2.5", "3,c,")]
    fast, full = both_ways(http, auth, home, csv_lines(rows), csv_lines(edited))
    assert fast["result"]["parsed_rows"] == 0
    assert fast["table"] == full["table"]
    cols = fast["table"]["columns"]
    assert [(c["type"], c["nullable"]) for c in cols][2] == ("float", True)
    assert fast["rows"][1] == [4, "v", 4.0]


def test_another_header_or_dialect_reads_every_row(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    rows = [f"{i},v{i},{i}" for i in range(300)]
    renamed = csv_lines(rows, header="k,v,y")
    fast, full = both_ways(http, auth, home, csv_lines(rows), renamed)
    assert "parsed_rows" not in fast["result"]
    assert fast["table"] == full["table"]
    semi = csv_lines([r.replace(",", ";") for r in rows], header="k;v;x")
    fast, full = both_ways(http, auth, home, csv_lines(rows), semi)
    assert "parsed_rows" not in fast["result"]
    assert fast["result"]["unchanged"] and full["result"]["unchanged"]  # the same rows


def test_a_gzipped_re_upload_reads_by_lines(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    import gzip

    rows = [f"{i},v{i},{i}" for i in range(2000)]
    edited = list(rows)
    edited[3] = "3,edited,3"
    v1 = gzip.compress(csv_lines(rows))
    v2 = gzip.compress(csv_lines(edited))
    fast, full = both_ways(http, auth, home, v1, v2, filename="data.csv.gz")
    assert fast["result"]["parsed_rows"] == 1
    assert fast["table"] == full["table"]


def test_the_same_file_again_makes_no_commit(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    v1 = csv_lines([f"{i},v{i},{i}" for i in range(300)])
    fast, full = both_ways(http, auth, home, v1, v1)
    assert fast["result"].get("unchanged") and full["result"].get("unchanged")


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.lists(
        st.sampled_from(["1,a,1", "2,b,2", '3,"c,c",3', '4,"d\nd",', "5,,5.5", "1,a,1"]),
        min_size=1,
        max_size=30,
    ),
    script=st.lists(
        st.tuples(st.sampled_from(["ins", "del", "edit"]), st.integers(0, 1000)), max_size=8
    ),
)
def test_any_edit_script_gives_the_full_import_table(
    http: httpx.Client,
    auth: dict[str, str],
    home: Path,
    base: list[str],
    script: list[tuple[str, int]],
) -> None:
    rows = base * 4  # enough paired lines for the line path to be taken
    edited = list(rows)
    for op, at in script:
        i = at % (len(edited) + 1)
        if op == "ins":
            edited.insert(i, f"{at},new {at},{at}")
        elif edited and op == "del":
            del edited[i % len(edited)]
        elif edited:
            edited[i % len(edited)] = f'{at},"edited\n{at}",{at / 2}'
    if not edited:
        return
    fast, full = both_ways(http, auth, home, csv_lines(rows), csv_lines(edited))
    assert fast.get("table") == full.get("table")
    assert fast.get("rows") == full.get("rows")


def test_a_tampered_or_foreign_line_index_is_not_read(
    http: httpx.Client, auth: dict[str, str], home: Path
) -> None:
    """Issue 15, "Integrity of the re-upload line path": an index whose
    hashes were edited (or copied from another branch) must not make a commit
    keep rows its file does not hold. Before, only the schema and manifest
    ids were checked, and this re-upload kept the old value of line 3."""
    rows = [f"{i},value {i},{i}" for i in range(2000)]
    ds = make_dataset(http, auth)["id"]
    assert import_csv(http, auth, ds, csv_lines(rows))["state"] == "succeeded"
    from core.storage import LocalStore
    from features.imports.lines import index_key

    index = LocalStore(home / "objects")._path(index_key(ds, "main", "data"))
    assert index.exists(), index
    raw = bytearray(index.read_bytes())
    edited = list(rows)
    edited[3] = "3,forged,3"
    # whoever can write the object store makes the stored hash of row 3 the
    # hash of the forged line, as computed without the installation's secret
    from features.imports import _records  # type: ignore[attr-defined]

    line = b"3,forged,3"
    forged = _records.split_hash(line, 0, len(line), True, ",")[0]
    end = raw.index(b"\n", len(b"dsa.lines.v2\n")) + 1
    raw[end + 3 * 16 : end + 4 * 16] = forged
    index.write_bytes(bytes(raw))
    job = import_csv(http, auth, ds, csv_lines(edited))
    assert job["state"] == "succeeded", job.get("error")
    assert "parsed_rows" not in job["result"]  # read in full: the index did not verify
    got = read_all(http, auth, ds, job["commit_id"])
    assert got[3] == [3, "forged", 3]
