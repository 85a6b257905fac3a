"""The lock file (``dsa.lock``, TOML): the exact data an analysis used.

``dsa lock add DATASET@REF`` pins, per dataset: the server, the dataset's
id and name, the ref asked for and the commit it stood at, and per table
its row count, columns and content digest (docs/hash-spec.md, "Table
digest": the server computes it from the manifest). ``dsa pull`` downloads
every pinned table at its commit (Parquet; an interrupted download resumes
by range) and verifies it: the same columns, row count and digest, computed
here from the downloaded rows with the same row hashing as the server
(``core.hashing``, a pure helper the client shares).
"""

from __future__ import annotations

import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pyarrow.parquet as pq
import tomli_w
from dsa.client import Client
from dsa.errors import DsaClientError, ProblemError

from core.hashing import row_hashes
from core.schema import Column, is_type

VERSION = 1
HEADER = "# dsa.lock: written by `dsa lock add`; `dsa pull` downloads and verifies it.\n"


class LockError(DsaClientError):
    """A lock file that cannot be read or does not say what ``dsa pull`` needs."""


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise LockError(f"{p}: no lock file (make one with `dsa lock add DATASET@REF`)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise LockError(f"{p}: not a lock file: {err}") from None
    if data.get("version") != VERSION or not isinstance(data.get("dataset", []), list):
        raise LockError(f"{p}: not a version {VERSION} lock file written by dsa")
    for i, entry in enumerate(data.get("dataset", [])):
        for key in ("server", "id", "name", "commit", "table"):
            if key not in entry:
                raise LockError(f"{p}: dataset entry {i + 1} has no {key!r}")
        for t in entry["table"]:
            for key in ("name", "rows", "digest", "columns"):
                if key not in t:
                    raise LockError(f"{p}: {entry['name']}/{t.get('name', '?')} has no {key!r}")
    return data


def write(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(HEADER + tomli_w.dumps(data))
    os.replace(tmp, p)


def add(
    client: Client, path: str, dataset: str, ref: str, tables: list[str] | None = None
) -> dict[str, Any]:
    """Pin ``dataset`` at ``ref`` (its tables, or only ``tables``); the entry."""
    data: dict[str, Any] = (
        read(path) if Path(path).exists() else {"version": VERSION, "dataset": []}
    )
    ds = client.dataset(dataset)
    got = client.tables(ds["id"], ref, digest=True)
    items = got["items"]
    if tables:
        missing = sorted(set(tables) - {t["name"] for t in items})
        if missing:
            raise DsaClientError(f"{dataset}@{ref} has no table {missing[0]!r}")
        items = [t for t in items if t["name"] in tables]
    entry: dict[str, Any] = {
        "server": client.url,
        "id": str(ds["id"]),
        "name": ds["name"],
        "ref": ref,
        "commit": got["commit_id"],
        "locked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "table": [
            {
                "name": t["name"],
                "rows": t["row_count"],
                "digest": t["digest"],
                # "name:type", the type as its canonical text (decimal(12,2) …)
                "columns": [f"{c['name']}:{Column.from_json(c).type}" for c in t["columns"]],
            }
            for t in items
        ],
    }
    data["dataset"] = [
        e for e in data["dataset"] if not (e["server"] == client.url and e["id"] == entry["id"])
    ] + [entry]
    write(path, data)
    return {**entry, "dataset": entry["name"], "tables": entry["table"]}


def digest_of(path: Path, columns: list[Column]) -> tuple[str, int]:
    """The table digest and row count of a Parquet file holding ``columns``."""
    f = pq.ParquetFile(path)
    names = [c.name for c in columns]
    have = f.schema_arrow.names
    if have != names:
        raise LockError(f"the file's columns are {have}, the lock's {names}")
    digest = blake3.blake3(b"dsa.chunk.v1\0")
    rows = 0
    for batch in f.iter_batches(batch_size=65_536, columns=names):
        digest.update(row_hashes(batch, columns))
        rows += batch.num_rows
    return "blake3:" + digest.hexdigest(), rows


def _columns(spec: list[str]) -> list[Column]:
    """``name:type`` entries as columns: the type is what follows the first
    colon after which a type parses (names may hold colons, struct types do)."""
    out = []
    for s in spec:
        for i, ch in enumerate(s):
            if ch == ":" and i and is_type(s[i + 1 :]):
                out.append(Column(s[:i], s[i + 1 :]))
                break
        else:
            raise LockError(f"{s!r} is not a column (name:type)")
    return out


def _verified(path: Path, t: dict[str, Any]) -> bool:
    try:
        return digest_of(path, _columns(t["columns"])) == (t["digest"], t["rows"])
    except (LockError, OSError, ValueError):
        return False


def pull(lock_path: str, into: str, *, quiet: bool = True) -> list[dict[str, Any]]:
    """Download and verify every pinned table; one report per table (``ok``,
    and ``problem`` in plain words when not)."""
    from dsa.progress import export_with_progress

    data = read(lock_path)
    report: list[dict[str, Any]] = []
    clients: dict[str, Client] = {}
    try:
        for entry in data["dataset"]:
            client = clients.get(entry["server"])
            if client is None:
                client = clients[entry["server"]] = Client(entry["server"])
            for t in entry["table"]:
                out = Path(into) / entry["name"] / f"{t['name']}.parquet"
                out.parent.mkdir(parents=True, exist_ok=True)
                got = {"dataset": entry["name"], "table": t["name"], "path": str(out)}
                problem: str | None = None
                if out.exists() and _verified(out, t):
                    report.append({**got, "ok": True, "rows": t["rows"], "digest": t["digest"]})
                    continue  # pulled before: nothing to download
                try:
                    export_with_progress(
                        client, entry["id"], entry["commit"], t["name"], "parquet", str(out),
                        quiet=quiet, resume=True,
                    )  # fmt: skip
                    digest, rows = digest_of(out, _columns(t["columns"]))
                except ProblemError as err:
                    problem = str(err)
                    if err.code in ("ref_not_found", "revision_not_found"):
                        problem = f"commit {entry['commit'][:12]} is no longer on {entry['server']}"
                    report.append({**got, "ok": False, "problem": problem})
                    continue
                except LockError as err:
                    report.append({**got, "ok": False, "problem": str(err)})
                    continue
                if rows != t["rows"]:
                    problem = f"{rows:,} rows, the lock pins {t['rows']:,}"
                elif digest != t["digest"]:
                    problem = f"digest {digest[:20]}…, the lock pins {t['digest'][:20]}…"
                report.append(
                    {**got, "ok": problem is None, "rows": rows, "digest": digest}
                    | ({"problem": problem} if problem else {})
                )
    finally:
        for c in clients.values():
            c.close()
    return report
