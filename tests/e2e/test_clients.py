"""The clients (issue 16): the ``dsa`` command's client side and the Python
client ``dsa.Client``, against the real API and worker over HTTP."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dsa
import httpx
import polars as pl
import pytest

from tests.conftest import ADMIN_PASSWORD

ROWS = 3_000


def _frame(edit: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": range(ROWS),
            "name": [f"n{i}" for i in range(ROWS)],
            "score": [float(i % 97) + (0.5 if i < edit else 0) for i in range(ROWS)],
        }
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client-home")


def dsa_cmd(
    home: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    base["DSA_CONFIG_DIR"] = str(home / "config")
    base.update(env or {})
    out = subprocess.run(
        [str(Path(sys.executable).with_name("dsa")), *args],  # the installed command
        cwd=home,
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.fixture(scope="module")
def logged_in(home: Path, api_url: str) -> str:
    out = dsa_cmd(
        home, "login", api_url, "--username", "admin", env={"DSA_PASSWORD": ADMIN_PASSWORD}
    )
    assert "Logged in" in out.stdout
    creds = home / "config" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    saved = json.loads(creds.read_text())
    assert saved["default"] == api_url and saved["servers"][api_url]["token"].startswith("dsa_")
    return api_url


@pytest.fixture(scope="module")
def people(home: Path, logged_in: str) -> dict[str, Any]:
    """A dataset made and fed with the CLI: v1, v2 (10 scores edited), a
    branch from v1 with one more change, merged back."""
    name = f"people-{uuid.uuid4().hex[:8]}"
    dsa_cmd(home, "create", name, "--primary-key", "id")
    _frame().write_csv(home / "v1.csv")
    _frame(edit=10).write_csv(home / "v2.csv")
    v1 = dsa_cmd(
        home, "upload", "v1.csv", f"{name}@main", "-m", "first", "--table", "people"
    ).stdout.strip()
    v2 = dsa_cmd(
        home, "upload", "v2.csv", name, "-m", "ten scores", "--table", "people"
    ).stdout.strip()
    assert len(v1) == len(v2) == 64 and v1 != v2
    dsa_cmd(home, "branch", name, "side", "--from", "main~1")
    _frame().with_columns(name=pl.lit("side")).write_csv(home / "side.csv")
    dsa_cmd(
        home, "upload", "side.csv", f"{name}@side", "-m", "renamed everyone", "--table", "people"
    )
    merged = dsa_cmd(home, "merge", name, "side", "--into", "main", "--strategy", "theirs")
    saved = json.loads((home / "config" / "credentials.json").read_text())
    return {
        "name": name, "v1": v1, "v2": v2, "merge": merged.stdout.strip(), "url": logged_in,
        "token": saved["servers"][logged_in]["token"],
    }  # fmt: skip


def test_everyday_commands(home: Path, people: dict[str, Any]) -> None:
    name = people["name"]
    listed = json.loads(dsa_cmd(home, "datasets", "--json").stdout)
    assert name in {d["name"] for d in listed}
    log = json.loads(dsa_cmd(home, "log", name, "--json").stdout)
    assert log[0]["id"] == people["merge"] and people["v2"] in {c["id"] for c in log}
    graph = dsa_cmd(home, "log", name, "--graph").stdout
    assert "*" in graph and "\\" in graph and "renamed everyone" in graph, graph
    diff = json.loads(dsa_cmd(home, "diff", name, "main~2..main~1", "--json").stdout)
    assert diff["summary"]["modified"] == 10
    human = dsa_cmd(home, "diff", name, f"{people['v1'][:10]}..{people['v2'][:10]}").stdout
    assert "10 modified" in human and "→" in human
    shown = dsa_cmd(home, "show", f"{name}@main~1", "--limit", "3").stdout
    assert "n0" in shown and "of 3,000" in shown
    tables = json.loads(dsa_cmd(home, "tables", f"{name}@{people['v2']}", "--json").stdout)
    assert tables["items"][0]["row_count"] == ROWS
    dsa_cmd(home, "export", f"{name}@main~1", "-o", "v2.parquet")
    assert pl.read_parquet(home / "v2.parquet").equals(_frame(edit=10))
    # an interrupted Parquet download continues by range where it stopped
    whole = (home / "v2.parquet").read_bytes()
    (home / "again.parquet.part").write_bytes(whole[:5000])
    etag = httpx.head(
        f"{people['url']}/api/v1/datasets/{name}/refs/{people['v2']}/export",
        params={"format": "parquet"},
        headers={"Authorization": f"Bearer {people['token']}"},
    ).headers["etag"]
    (home / "again.parquet.part.etag").write_text(etag)
    got = json.loads(
        dsa_cmd(home, "export", f"{name}@{people['v2']}", "-o", "again.parquet", "--json").stdout
    )
    assert got["resumed_from"] == 5000 and (home / "again.parquet").read_bytes() == whole
    assert not (home / "again.parquet.part").exists()
    dsa_cmd(home, "export", f"{name}@{people['v1']}", "-o", "v1-out.csv")
    assert pl.read_csv(home / "v1-out.csv").equals(_frame())


def test_lock_pins_and_pull_verifies(home: Path, people: dict[str, Any]) -> None:
    name = people["name"]
    dsa_cmd(home, "lock", "add", f"{name}@main~1")
    text = (home / "dsa.lock").read_text()
    assert people["v2"] in text and "blake3:" in text
    out = dsa_cmd(home, "pull", "--dir", "data")
    assert pl.read_parquet(home / "data" / name / "people.parquet").equals(_frame(edit=10))
    assert "verified" in out.stderr
    dsa_cmd(home, "pull", "--dir", "data")  # pulled before: verified in place
    # the file changed on disk: pulled again
    pl.DataFrame({"x": [1]}).write_parquet(home / "data" / name / "people.parquet")
    dsa_cmd(home, "pull", "--dir", "data")
    assert pl.read_parquet(home / "data" / name / "people.parquet").height == ROWS
    # a lock edited by hand: exit 1 naming the first mismatch, no traceback
    bad = text.replace("rows = 3000", "rows = 2999")
    (home / "edited.lock").write_text(bad)
    out = dsa_cmd(home, "pull", "--lock", "edited.lock", "--dir", "other", check=False)
    assert out.returncode == 1 and f"{name}/people" in out.stderr and "2,999" in out.stderr
    gone = text.replace(people["v2"], "ab" * 32)
    (home / "gone.lock").write_text(gone)
    out = dsa_cmd(home, "pull", "--lock", "gone.lock", "--dir", "gone", check=False)
    assert out.returncode == 1 and "no longer" in out.stderr, out.stderr
    (home / "junk.lock").write_text("this is = not [toml")
    out = dsa_cmd(home, "pull", "--lock", "junk.lock", check=False)
    assert out.returncode == 1 and "not a lock file" in out.stderr


def test_bad_input_is_one_line_and_exit_1(home: Path, people: dict[str, Any], api_url: str) -> None:
    cases = [
        (["datasets"], {"DSA_URL": "http://127.0.0.1:9", "DSA_TOKEN": "x"}, "cannot reach"),
        (["datasets"], {"DSA_URL": api_url, "DSA_TOKEN": "dsa_wrong"}, ""),
        (["log", "no-such-dataset-anywhere"], {}, "no-such-dataset-anywhere does not exist"),
        (["log", f"{people['name']}@main~x"], {}, "'x'"),
        (["tables", f"{people['name']}@nope"], {}, "nope"),
    ]
    for args, env, said in cases:
        out = dsa_cmd(home, *args, env=env, check=False)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.startswith("dsa: ") and said in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    (home / "ragged.csv").write_text("a,b\n1,2\n3\n")
    out = dsa_cmd(home, "upload", "ragged.csv", people["name"] + "@side", check=False)
    assert out.returncode == 1 and "line 3" in out.stderr, out.stderr
    out = dsa_cmd(home, "upload", "missing.csv", people["name"], check=False)
    assert out.returncode == 1 and "no such file" in out.stderr
    usage = dsa_cmd(home, "diff", check=False)
    assert usage.returncode == 2


def test_the_python_client(
    home: Path, logged_in: str, people: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSA_CONFIG_DIR", str(home / "config"))
    with dsa.Client() as c:  # the credentials dsa login saved
        name = f"py-{uuid.uuid4().hex[:8]}"
        c.create_dataset(name)
        _frame().write_parquet(home / "py.parquet")
        seen: list[str] = []
        job = c.upload(
            name, home / "py.parquet", table="py", on_progress=lambda j: seen.append(j["state"])
        )
        assert job["state"] == "succeeded" and seen[-1] == "succeeded"
        assert c.read(name).equals(_frame())
        got = c.read(name, columns=["id"], filter="id < 5")
        assert got["id"].to_list() == [0, 1, 2, 3, 4]
        lazy = c.scan(name).filter(pl.col("score") > 95).select("id").collect()
        assert lazy.height == _frame().filter(pl.col("score") > 95).height
        _frame(edit=3).write_parquet(home / "py2.parquet")
        c.upload(name, home / "py2.parquet", table="py", message="three")
        assert c.compare(name, "main~1", "main")["summary"]["modified"] == 3
        assert [x["message"] for x in c.log(name)][:1] == ["three"]
        with pytest.raises(dsa.ProblemError) as err:
            c.tables(name, "main~7")
        assert err.value.status == 404 and err.value.code == "revision_not_found"
        (home / "bad.csv").write_text("a,b\n1,2\n3\n")
        with pytest.raises(dsa.JobFailed) as failed:
            c.upload(name, home / "bad.csv", table="py")
        assert failed.value.problem.get("line") == 3 and failed.value.job["state"] == "failed"


def test_the_digest_is_the_rows_not_their_storage(
    home: Path, logged_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rows in the same order give one digest, however stored: a
    fresh import, and a re-upload that brings them back after an edit (a
    manifest of pieces of two uploads)."""
    monkeypatch.setenv("DSA_CONFIG_DIR", str(home / "config"))
    with dsa.Client() as c:
        name = f"dg-{uuid.uuid4().hex[:8]}"
        c.create_dataset(name)
        _frame().write_csv(home / "a.csv")
        _frame(edit=500).write_csv(home / "b.csv")
        first = c.upload(name, home / "a.csv")["commit_id"]
        c.upload(name, home / "b.csv", table="a")
        back = c.upload(name, home / "a.csv")["commit_id"]
        assert back != first
        d1 = c.tables(name, first, digest=True)["items"][0]["digest"]
        d3 = c.tables(name, back, digest=True)["items"][0]["digest"]
        d2 = c.tables(name, "main~1", digest=True)["items"][0]["digest"]
        assert d1 == d3 != d2 and d1.startswith("blake3:")
        assert c.tables(name, first)["items"][0]["digest"] == d1  # remembered


def test_retries_honour_retry_after(home: Path) -> None:
    """A server answering 429 with Retry-After, then 200: the client waits
    as told and succeeds; past its retries it raises the problem."""
    calls: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            import time

            calls.append(time.monotonic())
            busy = len(calls) < 3 or self.path.startswith("/api/v1/users/me?always")
            body = json.dumps(
                {"title": "Too many requests", "status": 429, "code": "too_many_requests",
                 "detail": "slow down"} if busy else {"id": "1", "username": "u", "is_admin": False}
            ).encode()  # fmt: skip
            self.send_response(429 if busy else 200)
            if busy:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with dsa.Client(url, "t") as c:
            assert c.me()["username"] == "u"
            assert len(calls) == 3 and calls[2] - calls[0] >= 1.9
        with dsa.Client(url, "t", retries=1) as c, pytest.raises(dsa.ProblemError) as err:
            c.session.json("GET", "/api/v1/users/me?always")
        assert err.value.status == 429 and str(err.value) == "slow down"
    finally:
        server.shutdown()


def _blocks(text: str, lang: str, after: str) -> list[str]:
    body = text[text.index(after) :]
    out, rest = [], body
    while f"```{lang}\n" in rest:
        rest = rest[rest.index(f"```{lang}\n") + len(lang) + 4 :]
        out.append(rest[: rest.index("```")])
        rest = rest[rest.index("```") + 3 :]
        if "\n## " in rest.split("```")[0]:
            break
    return out


def test_the_readme_try_it_runs_as_written(tmp_path: Path, api_url: str) -> None:
    """README's five-minute path, pasted into a shell against a test server
    (only the URL differs), then its Python snippet."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    shell = _blocks(readme, "sh", "## Try it")[0]
    shell = shell.replace("http://127.0.0.1:8000", api_url)
    shell = shell.replace('export PATH="$PWD/.venv/bin:$PATH"', "")
    (tmp_path / "docs" / "samples").mkdir(parents=True)
    (tmp_path / "docs" / "samples" / "people.csv").write_text(
        (root / "docs" / "samples" / "people.csv").read_text()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    env.update(
        DSA_CONFIG_DIR=str(tmp_path / "config"),
        DSA_PASSWORD=ADMIN_PASSWORD,
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    with dsa.Client(api_url, _admin_token(api_url)) as c:  # a clean slate for the name
        if any(d["name"] == "people" for d in c.datasets()):
            c.session.request("DELETE", "/api/v1/datasets/people")
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "1 modified" in out.stdout and "27" in out.stdout and "28" in out.stdout
    assert "verified" in out.stderr and (tmp_path / "data" / "people" / "people.parquet").exists()
    python = _blocks(readme, "python", "## Try it")[0]
    out = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "'modified': 1" in out.stdout


def _admin_token(api_url: str) -> str:
    import httpx

    r = httpx.post(
        f"{api_url}/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    return str(r.json()["access_token"])


def test_dsa_urls_read_a_version_with_polars_pandas_and_pyarrow(
    home: Path, logged_in: str, people: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec
    import pandas as pd
    import pyarrow.parquet as pq

    monkeypatch.setenv("DSA_CONFIG_DIR", str(home / "config"))
    name = people["name"]
    want = _frame(edit=10)
    url = f"dsa://{name}@{people['v2'][:12]}/people.parquet"
    assert pd.read_parquet(url).equals(want.to_pandas())
    with fsspec.open(f"dsa://{name}@main~1/people.csv") as f:  # polars: through a file
        assert pl.read_csv(f).equals(want)
    assert pd.read_csv(f"dsa://{name}@main~1/people.csv")["score"].sum() == want["score"].sum()
    assert pl.read_parquet(url, use_pyarrow=True).equals(want)
    # polars' own readers do not take dsa://; dsa.scan_parquet gives the same lazily
    lazy = dsa.scan_parquet(url).filter(pl.col("score") > 90).select("id").collect()
    assert lazy.equals(want.filter(pl.col("score") > 90).select("id"))
    assert dsa.read_parquet(f"dsa://{name}@main~1/people.parquet").equals(want)
    # ranged reads: one column of a 300,000-row table reads a fraction of the file
    big = pl.DataFrame({"id": range(300_000), "text": [uuid.uuid4().hex for _ in range(300_000)]})
    big.write_parquet(home / "big.parquet")
    with dsa.Client() as c:
        c.upload(name, home / "big.parquet", "side", table="big")
    fs = fsspec.filesystem("dsa")
    big_url = f"dsa://{name}@side/big.parquet"
    size = fs.info(big_url)["size"]
    with fs.open(big_url) as f:
        got = pq.ParquetFile(f).read(columns=["id"])
        fetched = f.fetched
    assert got.column("id").to_pylist() == list(range(300_000))
    assert 0 < fetched < size / 3, (fetched, size)
    listed = fs.ls(f"dsa://{name}@main", detail=False)
    assert listed == [f"{name}@main/people.parquet"]
    with pytest.raises(dsa.ProblemError):
        pd.read_parquet(f"dsa://{name}@nope/people.parquet")


def test_what_the_data_holds_from_a_terminal(home: Path, people: dict[str, Any]) -> None:
    """``dsa stats``, ``dsa quality`` (exit 3 below the threshold, for
    scripts) and ``dsa search``."""
    name = people["name"]
    stats = json.loads(dsa_cmd(home, "stats", f"{name}@main", "--json").stdout)
    assert stats["row_count"] == ROWS and {c["name"] for c in stats["columns"]} >= {"id"}
    assert "distinct" in dsa_cmd(home, "stats", name).stdout
    h = {"Authorization": f"Bearer {people['token']}"}
    rules = [{"name": "few", "table": "people", "check": "row_count_min", "args": {"min": 10**9}}]
    r = httpx.put(f"{people['url']}/api/v1/datasets/{name}/quality", headers=h,
                  json={"rules": rules, "threshold": 100})  # fmt: skip
    assert r.status_code == 200, r.text
    low = dsa_cmd(home, "quality", name, check=False)
    assert low.returncode == 3 and "✗" in low.stdout and "few" in low.stdout
    found = json.loads(dsa_cmd(home, "search", name, "--json").stdout)
    assert found["items"][0]["name"] == name
