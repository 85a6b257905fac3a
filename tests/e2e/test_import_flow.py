"""Whole flows over real HTTP: uvicorn API process, Celery worker process,
PostgreSQL and Redis."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import time
from pathlib import Path
from typing import Any

import blake3
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import import_csv, make_dataset, upload, wait_job


def make_rows(n: int, seed: int, edit: float = 0.0) -> list[list[Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            [
                i,
                f"name-{i}" if i % 17 else "",
                None if i % 11 == 0 else round(i * 0.5, 2),
                f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                'yes, "quoted"' if i % 7 == 0 else "plain",
            ]
        )
    for r in rows:
        if edit and rnd.random() < edit:
            r[1] = r[1] + "-edited"
    return rows


def to_csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    out.write("id,name,score,day,note\n")
    w = csv.writer(out, lineterminator="\n")
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return out.getvalue().encode()


def read_all(http: httpx.Client, auth: dict[str, str], ds: str, ref: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    offset = 0
    while True:
        page = http.get(
            f"/api/v1/datasets/{ds}/refs/{ref}/data",
            params={"offset": offset, "limit": 1000},
            headers=auth,
        ).json()
        rows.extend(page["rows"])
        offset += 1000
        if offset >= page["total_rows"]:
            return rows


def test_upload_import_pages_and_history(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    rows = make_rows(5000, seed=1)
    job = import_csv(http, auth, ds, to_csv(rows), filename="things.csv", message="v1")
    assert job["state"] == "succeeded", job
    assert job["progress"]["rows"] == 5000
    assert job["progress"]["bytes"] == job["progress"]["total_bytes"] > 0
    first = job["commit_id"]

    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()
    assert tables["commit_id"] == first
    (t,) = tables["items"]
    assert t["name"] == "things" and t["row_count"] == 5000
    assert [c["type"] for c in t["columns"]] == ["integer", "string", "float", "date", "string"]

    # csv.writer leaves empty names unquoted, and an unquoted empty field is null
    expected = [[r[0], r[1] or None, r[2], r[3], r[4]] for r in rows]
    rnd = random.Random(7)
    for _ in range(40):
        off = rnd.randrange(0, 5000)
        lim = rnd.choice([1, 7, 100, 333])
        page = http.get(
            f"/api/v1/datasets/{ds}/refs/main/data",
            params={"offset": off, "limit": lim},
            headers=auth,
        ).json()
        assert page["rows"] == expected[off : off + lim]
        assert page["total_rows"] == 5000

    # a second upload makes a new commit; the old one still reads its rows
    rows2 = make_rows(5200, seed=2, edit=0.05)
    job2 = import_csv(http, auth, ds, to_csv(rows2), filename="things.csv", message="v2")
    assert job2["state"] == "succeeded", job2
    second = job2["commit_id"]
    assert second != first
    assert read_all(http, auth, ds, first) == expected
    assert len(read_all(http, auth, ds, "main")) == 5200
    assert read_all(http, auth, ds, first[:7]) == expected

    hist = http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()
    assert [c["id"] for c in hist["items"]][:2] == [second, first]
    assert [c["message"] for c in hist["items"]] == ["v2", "v1", "Create dataset"]
    assert hist["items"][0]["parents"] == [first]
    assert hist["items"][0]["stats"] == {"tables": 1, "rows": 5200}

    detail = http.get(f"/api/v1/datasets/{ds}/commits/{second[:10]}", headers=auth).json()
    assert detail["id"] == second
    prov = detail["provenance"]
    assert prov["source"]["file_name"] == "things.csv"
    assert prov["dialect"]["delimiter"] == ","
    assert detail["tables"][0]["row_count"] == 5200


def test_identical_upload_makes_no_commit(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    body = to_csv(make_rows(300, seed=3))
    a = import_csv(http, auth, ds, body)
    b = import_csv(http, auth, ds, body)
    assert a["state"] == b["state"] == "succeeded"
    assert b["commit_id"] == a["commit_id"]
    assert b["result"]["unchanged"] is True
    hist = http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()
    assert hist["total"] == 2


BAD_INPUTS = [
    ("empty.csv", b"", "empty_file", 1),
    ("ragged.csv", b"a,b\n1,2\n3,4\n5,6,7\n8,9\n", "ragged_row", 4),
    ("binary.csv", bytes(range(256)) * 40, "binary_file", 1),
    ("dup.csv", b"a,b,a\n1,2,3\n", "duplicate_column_name", 1),
    ("blank.csv", b"a,,c\n1,2,3\n", "blank_column_name", 1),
    ("quote.csv", b'a,b\n1,2\n3,"open\n4,5\n', "unterminated_quote", 3),
]


@pytest.mark.parametrize(("filename", "content", "code", "line"), BAD_INPUTS)
def test_bad_input_fails_the_job_with_a_located_problem(
    http: httpx.Client, auth: dict[str, str], filename: str, content: bytes, code: str, line: int
) -> None:
    ds = make_dataset(http, auth)["id"]
    before = http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["total"]
    r = upload(http, auth, ds, content, filename=filename)
    assert r.status_code == 202, r.text
    job = wait_job(http, auth, r.json()["job_id"])
    assert job["state"] == "failed"
    err = job["error"]
    assert err["code"] == code, err
    assert err["line"] == line, err
    assert err["status"] in (400, 422)
    assert err["detail"] and "Traceback" not in err["detail"]
    assert err["file"] == filename
    assert job["commit_id"] is None
    # nothing committed, and the worker keeps serving
    assert http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["total"] == before
    ok = import_csv(http, auth, ds, b"x\n1\n")
    assert ok["state"] == "succeeded"


def test_forced_type_that_does_not_fit_names_row_and_column(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    ds = make_dataset(http, auth)["id"]
    job = import_csv(
        http, auth, ds, b"a,b\n1,2\n3,x\n", options='{"column_types": {"b": "integer"}}'
    )
    assert job["state"] == "failed"
    assert job["error"]["code"] == "bad_value"
    assert job["error"]["column"] == "b" and job["error"]["line"] == 3


def test_unknown_things_are_404_problems(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    for path in (
        "/api/v1/datasets/00000000-0000-0000-0000-000000000000",
        f"/api/v1/datasets/{ds}/refs/nope/data",
        f"/api/v1/datasets/{ds}/refs/abcdef0123/tables",
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000",
        f"/api/v1/datasets/{ds}/commits/deadbeefdead",
    ):
        r = http.get(path, headers=auth)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["status"] == 404 and body["title"] and body["detail"] and body["type"]


def test_upload_limits_and_formats(
    http: httpx.Client, auth: dict[str, str], stack: dict[str, str]
) -> None:
    """Refused uploads answer 413/415/422/404 and leave nothing in the store:
    the file streams into it while it arrives (issue 13) and goes again."""
    uploads = Path(stack["DSA_HOME"]) / "objects" / "uploads"

    def kept() -> set[Path]:
        return {p for p in uploads.rglob("*") if p.is_file()} if uploads.exists() else set()

    before = kept()
    ds = make_dataset(http, auth)["id"]
    r = upload(http, auth, ds, b"x" * (21 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"
    r = upload(http, auth, ds, b"a\n1\n", filename="data.docx")
    assert r.status_code == 415
    r = upload(http, auth, ds, b"a\n1\n", mode="sideways")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "mode"
    r = upload(http, auth, ds, b"a\n1\n", branch="nope")
    assert r.status_code == 404
    assert kept() <= before  # nothing refused was kept (uploads of running jobs may go)


def test_a_late_value_widens_the_type_of_the_whole_column(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    """Types come from every value: the speculative chunks of the first blocks are
    dropped when row 600,001 turns the integer column into text."""
    ds = make_dataset(http, auth)["id"]
    body = "n,v\n" + "".join(f"{i},{i % 7}\n" for i in range(600_000)) + "n/a,1.5\n"
    r = upload(http, auth, ds, body.encode())
    seen = []  # progress is reported while the job runs
    while True:
        job = http.get(r.headers["location"], headers=auth).json()
        if job["state"] not in ("queued", "running"):
            break
        if job["state"] == "running":
            seen.append(job["progress"])
        time.sleep(0.05)
    assert job["state"] == "succeeded", job
    assert any(0 < p["bytes"] < len(body) for p in seen), seen[:5]
    assert any(0 < p["rows"] < 600_001 for p in seen), seen[:5]
    assert job["progress"] == {"rows": 600_001, "bytes": len(body), "total_bytes": len(body)}
    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()
    assert [c["type"] for c in tables["items"][0]["columns"]] == ["string", "float"]
    page = http.get(
        f"/api/v1/datasets/{ds}/refs/main/data",
        params={"offset": 599_998, "limit": 5},
        headers=auth,
    ).json()
    expected = [[str(i), float(i % 7)] for i in (599_998, 599_999)] + [["n/a", 1.5]]
    assert page["rows"] == expected
    assert page["total_rows"] == 600_001


def test_fields_after_the_file_part_and_its_name(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    body = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(400_000))  # several 4 MB blocks
    boundary = "xyzBOUNDARY"
    parts = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="late.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + body
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\n'
            f"fields may follow the file\r\n--{boundary}--\r\n"
        ).encode()
    )
    r = http.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads",
        content=parts,
        headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 202, r.text
    job = wait_job(http, auth, r.json()["job_id"])
    assert job["state"] == "succeeded" and job["result"]["rows"] == 400_000
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    assert detail["message"] == "fields may follow the file"
    src = detail["provenance"]["source"]
    assert src["file_name"] == "late.csv" and src["size"] == len(body)
    assert src["blake3"] == blake3.blake3(body).hexdigest()


def test_read_at_a_tag_and_a_branch(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    first = import_csv(http, auth, ds, b"a\n1\n2\n")["commit_id"]
    r = http.post(f"/api/v1/datasets/{ds}/tags", json={"name": "v1", "from": "main"}, headers=auth)
    want = {"name": "v1", "kind": "tag", "commit_id": first, "protected": False, "message": None}
    assert r.status_code == 201 and {k: r.json()[k] for k in want} == want
    r = http.post(
        f"/api/v1/datasets/{ds}/branches", json={"name": "dev", "from": first[:8]}, headers=auth
    )
    assert r.status_code == 201 and r.json()["commit_id"] == first
    assert import_csv(http, auth, ds, b"a\n3\n", branch="dev")["state"] == "succeeded"
    assert import_csv(http, auth, ds, b"a\n4\n")["state"] == "succeeded"

    def rows(ref: str) -> list[list[int]]:
        return http.get(f"/api/v1/datasets/{ds}/refs/{ref}/data", headers=auth).json()["rows"]

    assert rows("v1") == [[1], [2]]
    assert rows("dev") == [[3]]
    assert rows("main") == [[4]]
    refs = http.get(f"/api/v1/datasets/{ds}/refs", headers=auth).json()["items"]
    assert {(r["name"], r["kind"]) for r in refs} == {
        ("main", "branch"),
        ("dev", "branch"),
        ("v1", "tag"),
    }
    # names are unique per dataset, and may not look like commit ids
    r = http.post(f"/api/v1/datasets/{ds}/tags", json={"name": "v1", "from": "main"}, headers=auth)
    assert r.status_code == 409
    r = http.post(
        f"/api/v1/datasets/{ds}/branches", json={"name": "abcdef12", "from": "main"}, headers=auth
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_ref_name"
    # uploads go to branches only
    r = upload(http, auth, ds, b"a\n5\n", branch="v1")
    assert r.status_code == 404 and r.json()["code"] == "branch_not_found"


def test_compressed_upload_and_a_truncated_one(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    rows = make_rows(3000, seed=9)
    packed = gzip.compress(to_csv(rows))
    job = import_csv(http, auth, ds, packed, filename="things.csv.gz")
    assert job["state"] == "succeeded", job
    assert job["progress"]["bytes"] == len(packed)
    assert read_all(http, auth, ds, "main")[:3] == [[r[0], r[1] or None, *r[2:]] for r in rows[:3]]
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    assert detail["provenance"]["dialect"]["compression"] == "gzip"
    assert detail["tables"][0]["name"] == "things"

    bad = import_csv(http, auth, ds, packed[: len(packed) // 2], filename="things.csv.gz")
    assert bad["state"] == "failed"
    assert (
        bad["error"]["code"] == "corrupt_compressed_file" and "truncated" in bad["error"]["detail"]
    )
    hist = http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()
    assert hist["total"] == 2  # nothing committed by the truncated one


def test_parquet_upload_round_trips(
    http: httpx.Client, auth: dict[str, str], tmp_path: Path
) -> None:
    ds = make_dataset(http, auth)["id"]
    n = 3000
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int32()),
            "name": pa.array([None if i % 10 == 0 else f"n{i}" for i in range(n)]),
            "score": pa.array([i / 4 for i in range(n)], pa.float32()),
            "tags": pa.array([[i, i + 1] for i in range(n)]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=700)
    job = import_csv(http, auth, ds, path.read_bytes(), filename="measures.parquet")
    assert job["state"] == "succeeded", job
    assert job["progress"]["bytes"] == path.stat().st_size
    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()["items"]
    assert tables[0]["name"] == "measures"
    assert [c["type"] for c in tables[0]["columns"]] == ["integer", "string", "float", "list"]
    got = read_all(http, auth, ds, "main")
    assert got == [[i, None if i % 10 == 0 else f"n{i}", i / 4, [i, i + 1]] for i in range(n)]
    bad = import_csv(http, auth, ds, path.read_bytes()[:500], filename="measures.parquet")
    assert bad["state"] == "failed" and bad["error"]["code"] == "corrupt_parquet"


def test_append_adds_rows_and_reuses_every_stored_one(
    http: httpx.Client, auth: dict[str, str], stack: dict[str, str]
) -> None:
    ds = make_dataset(http, auth)["id"]
    first = import_csv(http, auth, ds, b"id,name\n1,a\n2,b\n", filename="t.csv")
    assert first["state"] == "succeeded"
    # columns in another order; values read as the table's types ("3" stays an integer)
    job = import_csv(http, auth, ds, b"name,id\nc,3\n,4\n", filename="t.csv", mode="append")
    assert job["state"] == "succeeded", job
    assert job["result"] == {"rows": 2, "table": "t", "table_rows": 4}
    assert read_all(http, auth, ds, "main") == [[1, "a"], [2, "b"], [3, "c"], [4, None]]
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    (t,) = detail["tables"]
    assert t["row_count"] == 4
    assert t["columns"] == [
        {"name": "id", "type": "integer", "nullable": False},
        {"name": "name", "type": "string", "nullable": True},
    ]
    # the parent's rows are not stored again: its manifest's pieces come first
    first_detail = http.get(
        f"/api/v1/datasets/{ds}/commits/{first['commit_id']}", headers=auth
    ).json()
    home = Path(stack["DSA_HOME"]) / "objects" / "manifests"

    def pieces(manifest_id: str) -> list[list[object]]:
        path = home / manifest_id[:2] / manifest_id[2:4] / manifest_id
        return json.loads(path.read_bytes())["pieces"]

    old = pieces(first_detail["tables"][0]["manifest_id"])
    new = pieces(t["manifest_id"])
    assert new[: len(old)] == old and len(new) == len(old) + 1

    # a file with other columns, or a value the table's type refuses, is an error
    bad = import_csv(http, auth, ds, b"id,extra\n5,x\n", filename="t.csv", mode="append")
    assert bad["state"] == "failed" and bad["error"]["code"] == "schema_mismatch"
    assert bad["error"]["missing"] == ["name"] and bad["error"]["extra"] == ["extra"]
    bad = import_csv(http, auth, ds, b"id,name\nsix,x\n", filename="t.csv", mode="append")
    assert bad["state"] == "failed" and bad["error"]["code"] == "bad_value"
    assert bad["error"]["column"] == "id" and bad["error"]["line"] == 2
    # appending to a table that does not exist yet creates it
    new_table = import_csv(http, auth, ds, b"z\n1\n", filename="other.csv", mode="append")
    assert new_table["state"] == "succeeded" and new_table["result"]["table_rows"] == 1


def test_a_workbook_gives_one_table_per_sheet(
    http: httpx.Client, auth: dict[str, str], tmp_path: Path
) -> None:
    import datetime as dt

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "People"
    ws.append(["id", "name", "born"])
    ws.append([1, "ann", dt.date(1990, 5, 17)])
    ws.append([2, "bob", dt.date(1985, 1, 2)])
    other = wb.create_sheet("Q3 sales")
    other.append(["region", "amount"])
    other.append(["north", 10.5])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    ds = make_dataset(http, auth)["id"]
    job = import_csv(http, auth, ds, path.read_bytes(), filename="book.xlsx")
    assert job["state"] == "succeeded", job
    assert [t["table"] for t in job["result"]["tables"]] == ["People", "Q3 sales"]
    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()["items"]
    assert [t["name"] for t in tables] == ["People", "Q3 sales"]
    people = http.get(
        f"/api/v1/datasets/{ds}/refs/main/data", params={"table": "People"}, headers=auth
    ).json()
    assert people["rows"] == [[1, "ann", "1990-05-17"], [2, "bob", "1985-01-02"]]
    assert [c["type"] for c in people["columns"]] == ["integer", "string", "date"]
    # one sheet chosen, under a name of the user's choosing
    job = import_csv(
        http,
        auth,
        ds,
        path.read_bytes(),
        filename="book.xlsx",
        table="sales",
        options='{"sheet": "Q3 sales"}',
    )
    assert job["state"] == "succeeded", job
    names = [
        t["name"]
        for t in http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()["items"]
    ]
    assert names == ["People", "Q3 sales", "sales"]
    bad = import_csv(
        http, auth, ds, path.read_bytes(), filename="book.xlsx", options='{"sheet": "Nope"}'
    )
    assert bad["state"] == "failed" and bad["error"]["code"] == "unknown_sheet"


def test_legacy_encodings_fall_back_and_say_so(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    job = import_csv(http, auth, ds, "a,b\n1,café €\n".encode("cp1252"), filename="w.csv")
    assert job["state"] == "succeeded", job
    assert read_all(http, auth, ds, "main") == [[1, "café €"]]
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    assert detail["provenance"]["dialect"]["encoding"] == "cp1252"
    # valid UTF-8 for the first megabytes, then a Windows-1252 byte: read again as 1252
    ds = make_dataset(http, auth)["id"]
    body = b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(500_000)) + b"9,caf\xe9\n"
    job = import_csv(http, auth, ds, body, filename="w.csv")
    assert job["state"] == "succeeded", job
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    assert detail["provenance"]["dialect"]["encoding"] == "cp1252"
    page = http.get(
        f"/api/v1/datasets/{ds}/refs/main/data", params={"offset": 500_000}, headers=auth
    ).json()
    assert page["rows"] == [[9, "café"]]
    # a declared encoding is obeyed: UTF-8 declared, not UTF-8 found, the job fails
    job = import_csv(
        http, auth, ds, b"a\ncaf\xe9\n", filename="w.csv", options='{"encoding": "utf-8"}'
    )
    assert job["state"] == "failed" and job["error"]["code"] == "invalid_encoding"


def test_archives_give_a_table_per_member(
    http: httpx.Client, auth: dict[str, str], tmp_path: Path
) -> None:
    import io
    import tarfile
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/people.csv", "id,name\n1,ann\n")
        zf.writestr("../../evil/places.csv.gz", gzip.compress(b"city\nOslo\n"))
        zf.writestr("notes.txt.md", "not a table")
        zf.writestr("empty/", "")
    ds = make_dataset(http, auth)["id"]
    job = import_csv(http, auth, ds, buf.getvalue(), filename="bundle.zip")
    assert job["state"] == "succeeded", job
    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()["items"]
    assert sorted(t["name"] for t in tables) == ["people", "places"]
    assert not list(tmp_path.parent.glob("evil"))  # nothing written by member path
    # options.members chooses; tar works too
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        for name, data in (("a.csv", b"x\n1\n"), ("b.csv", b"y\n2\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    ds = make_dataset(http, auth)["id"]
    job = import_csv(
        http, auth, ds, tbuf.getvalue(), filename="b.tar.gz", options='{"members": ["b.csv"]}'
    )
    assert job["state"] == "succeeded", job
    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()["items"]
    assert [t["name"] for t in tables] == ["b"]


def test_a_zip_bomb_stops_at_the_limit(http: httpx.Client, auth: dict[str, str]) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("big.csv", b"a\n" + b"0" * (30 * 1024 * 1024))  # 30 MB of zeros
    assert len(buf.getvalue()) < 100_000
    ds = make_dataset(http, auth)["id"]
    job = import_csv(http, auth, ds, buf.getvalue(), filename="bomb.zip")
    assert job["state"] == "failed" and job["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    "extra",
    [
        # a thousand small fields: each part was kept in memory until the end
        "".join(
            f'--B\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n' for i in range(1000)
        ),
        # fields within their own limit (1 MiB) but 3 MiB together
        "".join(
            f'--B\r\nContent-Disposition: form-data; name="g{i}"\r\n\r\n{"z" * 1_000_000}\r\n'
            for i in range(3)
        ),
    ],
    ids=["many-parts", "big-fields"],
)
def test_a_form_holds_a_bounded_amount_besides_its_file(
    http: httpx.Client, auth: dict[str, str], extra: str
) -> None:
    """Issue 15, "Uploads": before, all of these were read into memory and
    the upload accepted (202)."""
    ds = make_dataset(http, auth)["id"]
    body = (
        extra
        + '--B\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
        + "a,b\r\n1,2\r\n"
        + "--B--\r\n"
    ).encode()
    r = http.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads",
        content=body,
        headers={**auth, "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "too_many_fields"
    commits = http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["items"]
    assert len(commits) == 1  # nothing imported
