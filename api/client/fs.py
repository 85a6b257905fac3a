"""``dsa://`` URLs for fsspec (and what reads through it: pandas, polars'
``read_csv``, pyarrow, DuckDB's fsspec bridge).

``dsa://DATASET@REF/TABLE.parquet`` (also ``.csv``, ``.tsv``, ``.ndjson``,
``.arrow``, ``.xlsx``): the table of that version, in that format. ``REF`` is
any ref spelling (``main``, ``v2``, ``main~1``, a commit id); without
``@REF``, ``main``. ``dsa://DATASET@REF`` lists the version's tables. The
server and token come from ``DSA_URL``/``DSA_TOKEN`` or what ``dsa login``
saved (or ``storage_options={"url": …, "token": …}``).

A file pins the commit its ref stands at when it is opened, so every read of
it sees one version. Parquet files are read by HTTP range (fsspec's block
cache): a query that needs a few row groups reads those bytes, not the file.
Other formats stream whole into a spooled temporary file.
"""

from __future__ import annotations

import tempfile
from typing import Any

from dsa.client import Client, _ref, _seg
from dsa.errors import DsaClientError
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

FORMATS = {"parquet": "parquet", "csv": "csv", "tsv": "tsv", "ndjson": "ndjson",
           "jsonl": "ndjson", "arrow": "arrow", "xlsx": "xlsx"}  # fmt: skip


def parse(path: str) -> tuple[str, str, str | None, str | None]:
    """``DATASET@REF/TABLE.EXT`` → (dataset, ref, table, format)."""
    path = path.strip("/")
    head, _, file = path.rpartition("/")
    if not head or file.rpartition(".")[2].lower() not in FORMATS:  # a version's listing
        head, file = path, ""
    dataset, _, ref = head.partition("@")
    if not dataset:
        raise DsaClientError(f"dsa://{path}: expected dsa://DATASET@REF/TABLE.parquet")
    if not file:
        return dataset, ref or "main", None, None
    table, _, ext = file.rpartition(".")
    fmt = FORMATS.get(ext.lower())
    if not table or fmt is None:
        raise DsaClientError(
            f"dsa://{path}: name a table and a format, e.g. {file or 'TABLE'}.parquet "
            f"(formats: {', '.join(sorted(FORMATS))})"
        )
    return dataset, ref or "main", table, fmt


class DsaFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = "dsa"
    root_marker = ""
    cachable = False  # DSA_URL/DSA_TOKEN are read when one is made

    def __init__(self, url: str | None = None, token: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.client = Client(url, token)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("dsa://") :] if path.startswith("dsa://") else path
        return path.rstrip("/")

    def _commit(self, dataset: str, ref: str) -> str:
        return str(self.client.tables(dataset, ref)["commit_id"])

    def ls(self, path: str, detail: bool = True, **kw: Any) -> list[Any]:
        dataset, ref, table, fmt = parse(self._strip_protocol(path))
        if table is not None:
            info = self.info(path)
            return [info] if detail else [info["name"]]
        got = self.client.tables(dataset, ref)
        out = [
            {"name": f"{dataset}@{ref}/{t['name']}.parquet", "type": "file", "size": None,
             "rows": t["row_count"]}
            for t in got["items"]
        ]  # fmt: skip
        return out if detail else [o["name"] for o in out]

    def info(self, path: str, **kw: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        dataset, ref, table, fmt = parse(name)
        if table is None:
            self._commit(dataset, ref)  # 404 if it is not there
            return {"name": name, "type": "directory", "size": 0}
        size = None
        if fmt == "parquet":
            url = f"/api/v1/datasets/{_seg(dataset)}/refs/{_ref(ref)}/export"
            r = self.client.session.request(
                "HEAD", url, params={"table": table, "format": fmt}, timeout=None
            )
            size = int(r.headers["content-length"])
        return {"name": name, "type": "file", "size": size}

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kw: Any) -> Any:
        if mode != "rb":
            raise NotImplementedError(
                "dsa:// is read-only: upload with dsa upload or Client.upload"
            )
        name = self._strip_protocol(path)
        dataset, ref, table, fmt = parse(name)
        if table is None or fmt is None:
            raise IsADirectoryError(name)
        commit = self._commit(dataset, ref)
        if fmt == "parquet":
            return _RangedFile(self, name, dataset, commit, table, block_size=block_size)
        spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115
        self.client.export(dataset, commit, table, format=fmt, to=spool)
        spool.seek(0)
        return spool


class _RangedFile(AbstractBufferedFile):  # type: ignore[misc]
    """A Parquet export read by HTTP range at one commit."""

    def __init__(
        self, fs: DsaFileSystem, name: str, dataset: str, commit: str, table: str, **kw: Any
    ) -> None:
        self.url = f"/api/v1/datasets/{_seg(dataset)}/refs/{commit}/export"
        self.params = {"table": table, "format": "parquet"}
        r = fs.client.session.request("HEAD", self.url, params=self.params, timeout=None)
        self.etag = r.headers.get("etag")
        size = int(r.headers["content-length"])
        block = kw.pop("block_size", None) or 1 << 20
        self.fetched = 0  # bytes read from the server so far
        super().__init__(fs, name, mode="rb", block_size=block, size=size, cache_type="none")

    def _fetch_range(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if self.etag:
            headers["If-Range"] = self.etag
        r = self.fs.client.session.request(
            "GET", self.url, params=self.params, headers=headers, timeout=None
        )
        if r.status_code != 206:
            raise DsaClientError(
                f"{self.path}: the server did not answer the range (status {r.status_code})"
            )
        self.fetched += len(r.content)
        return bytes(r.content)


def scan_parquet(url: str, *, client: Client | None = None, **kw: Any) -> Any:
    """``polars.scan_parquet`` of a ``dsa://DATASET@REF/TABLE.parquet`` URL:
    polars' own readers take only their schemes, so this reads the table's
    signed ``https://`` link (ranged reads, the commit pinned; ``kw`` go to
    polars)."""
    import polars as pl

    dataset, ref, table, fmt = parse(DsaFileSystem._strip_protocol(url))
    if table is None or fmt != "parquet":
        raise DsaClientError(f"{url}: expected dsa://DATASET@REF/TABLE.parquet")
    own = client is None
    c = client or Client()
    try:
        link = c.export_link(dataset, ref, table)  # links name the commit (pinned)
    finally:
        if own:
            c.close()
    return pl.scan_parquet(link, **kw)


def read_parquet(url: str, **kw: Any) -> Any:
    """``polars.read_parquet`` of a ``dsa://`` URL (see ``scan_parquet``)."""
    return scan_parquet(url, **kw).collect()
