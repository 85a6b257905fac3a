"""``dsa.Client``: every everyday action on a DSA server in one call.

Datasets are named by name or id, refs by any spelling the server takes
(``main``, ``v2``, ``main~1``, a commit id or prefix). Answers are plain
dicts (the server's JSON); tables are polars frames. Errors raise
``dsa.ProblemError`` carrying the server's problem document; a failed
import raises ``dsa.JobFailed`` (a ``ProblemError`` with the job).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from dsa import config
from dsa._http import Session
from dsa.errors import DsaClientError, ProblemError

Progress = Callable[[dict[str, Any]], None]
ENDED = ("succeeded", "failed", "cancelled")


class JobFailed(ProblemError):
    """An import (or other job) ended ``failed`` or ``cancelled``; ``job`` is its last state."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        problem = job.get("error") or {
            "status": 0,
            "title": f"job {job.get('state')}",
            "detail": f"the job was {job.get('state')}",
        }
        super().__init__(problem)


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _ref(value: str) -> str:
    return quote(str(value), safe="/~^@{}:")


class _Counting(io.RawIOBase):
    """A file read for upload that reports the bytes sent so far."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None] | None) -> None:
        self.f, self.report, self.sent = f, report, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sent += len(data)
        if self.report is not None:
            self.report(self.sent)
        return data

    def fileno(self) -> int:
        return self.f.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        self.f.close()
        super().close()


class Client:
    """A DSA server: ``url`` and ``token`` default to ``DSA_URL``/``DSA_TOKEN``,
    then to what ``dsa login`` saved."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
    ) -> None:
        target = config.resolve(url, token)
        self.url, self.token = target.url, target.token
        self.session = Session(self.url, self.token, timeout=timeout, retries=retries)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def _ds(self, dataset: str) -> str:
        return f"/api/v1/datasets/{_seg(dataset)}"

    # --- accounts -------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        return dict(self.session.json("GET", "/api/v1/users/me"))

    # --- datasets -------------------------------------------------------------
    def datasets(self, q: str | None = None) -> list[dict[str, Any]]:
        """Every dataset the caller may read (all pages)."""
        return list(self._pages("/api/v1/datasets", {"q": q} if q else {}))

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            got = self.session.json("GET", path, params={**params, "page": page, "per_page": 500})
            yield from got["items"]
            if not got.get("links", {}).get("next") or not got["items"]:
                return
            page += 1

    def dataset(self, dataset: str) -> dict[str, Any]:
        return dict(self.session.json("GET", self._ds(dataset)))

    def create_dataset(self, name: str, **kw: Any) -> dict[str, Any]:
        """``kw``: description, primary_key (list of columns), visibility."""
        return dict(self.session.json("POST", "/api/v1/datasets", json={"name": name, **kw}))

    # --- refs -------------------------------------------------------------------
    def refs(self, dataset: str) -> list[dict[str, Any]]:
        return list(self.session.json("GET", f"{self._ds(dataset)}/refs")["items"])

    def branch(self, dataset: str, name: str, from_ref: str = "main") -> dict[str, Any]:
        body = {"name": name, "from": from_ref}
        return dict(self.session.json("POST", f"{self._ds(dataset)}/branches", json=body))

    def tag(
        self, dataset: str, name: str, from_ref: str = "main", message: str | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "from": from_ref, **({"message": message} if message else {})}
        return dict(self.session.json("POST", f"{self._ds(dataset)}/tags", json=body))

    def merge(
        self,
        dataset: str,
        source: str,
        target: str,
        *,
        strategy: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"source": source, "target": target}
        if strategy:
            body["strategy"] = strategy
        if message:
            body["message"] = message
        return dict(self.session.json("POST", f"{self._ds(dataset)}/merges", json=body))

    # --- imports and jobs -------------------------------------------------------
    def upload(
        self,
        dataset: str,
        path: str | os.PathLike[str],
        branch: str = "main",
        table: str | None = None,
        mode: str = "replace",
        message: str | None = None,
        wait: bool = True,
        *,
        options: dict[str, Any] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        on_progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a file to ``branch``; the finished job (``wait``), else
        the queued one. ``on_bytes(sent)`` follows the upload,
        ``on_progress(job)`` the import. A failed import raises ``JobFailed``."""
        p = Path(path)
        if not p.is_file():
            raise DsaClientError(f"{p}: no such file")
        data = {"mode": mode}
        if table:
            data["table"] = table
        if message:
            data["message"] = message
        if options:
            data["options"] = json.dumps(options)

        def files() -> dict[str, Any]:
            f = _Counting(p.open("rb"), on_bytes)
            return {"file": (p.name, f, "application/octet-stream")}

        url = f"{self._ds(dataset)}/refs/{_ref(branch)}/uploads"
        answer = self.session.json("POST", url, data=data, files=files, timeout=None)
        job = self.job(answer["job_id"])
        return self.wait(job["id"], on_progress) if wait else job

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.session.json("GET", f"/api/v1/jobs/{_seg(job_id)}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self.session.json("POST", f"/api/v1/jobs/{_seg(job_id)}/cancel"))

    def wait(self, job_id: str, on_progress: Progress | None = None) -> dict[str, Any]:
        """Follow the job's event stream until it ends (polling if the stream
        breaks); the succeeded job, else ``JobFailed``."""
        job: dict[str, Any] | None = None
        while job is None or job["state"] not in ENDED:
            try:
                for job in self._events(job_id):
                    if on_progress is not None:
                        on_progress(job)
            except (DsaClientError, ValueError):
                time.sleep(0.5)
            job = self.job(job_id)
        if on_progress is not None:
            on_progress(job)
        if job["state"] != "succeeded":
            raise JobFailed(job)
        return job

    def _events(self, job_id: str) -> Iterator[dict[str, Any]]:
        with self.session.stream("GET", f"/api/v1/jobs/{_seg(job_id)}/events", timeout=None) as r:
            event, data = "message", []
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    job = json.loads("\n".join(data))
                    yield job
                    if event == "end":
                        return
                    event, data = "message", []

    # --- reading ---------------------------------------------------------------
    def tables(self, dataset: str, ref: str = "main", *, digest: bool = False) -> dict[str, Any]:
        """A version's tables (``digest``: with each one's content digest, computed if new)."""
        params = {"digest": "true"} if digest else {}
        url = f"{self._ds(dataset)}/refs/{_ref(ref)}/tables"
        return dict(self.session.json("GET", url, params=params))

    def stats(self, dataset: str, ref: str = "main", table: str | None = None) -> dict[str, Any]:
        """A table's column statistics at a version (``GET …/stats``)."""
        params = {"table": table} if table else {}
        url = f"{self._ds(dataset)}/refs/{_ref(ref)}/stats"
        return dict(self.session.json("GET", url, params=params))

    def quality(self, dataset: str, ref: str = "main") -> dict[str, Any]:
        """The quality report of a version (``GET …/quality``)."""
        return dict(self.session.json("GET", f"{self._ds(dataset)}/refs/{_ref(ref)}/quality"))

    def search(
        self, q: str = "", *, tags: list[str] | None = None, per_page: int = 20
    ) -> dict[str, Any]:
        """Datasets matching ``q`` (``GET /api/v1/search``), best first."""
        params: dict[str, Any] = {"q": q, "per_page": per_page}
        if tags:
            params["tag"] = tags
        return dict(self.session.json("GET", "/api/v1/search", params=params))

    def rows(
        self,
        dataset: str,
        ref: str = "main",
        table: str | None = None,
        *,
        offset: int = 0,
        limit: int = 100,
        columns: list[str] | None = None,
        filter: str | None = None,
        sort: str | None = None,
    ) -> dict[str, Any]:
        """One page of rows (the server's JSON)."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        for k, v in (("table", table), ("filter", filter), ("sort", sort)):
            if v:
                params[k] = v
        if columns:
            params["columns"] = ",".join(columns)
        url = f"{self._ds(dataset)}/refs/{_ref(ref)}/data"
        return dict(self.session.json("GET", url, params=params))

    def log(
        self,
        dataset: str,
        ref: str = "main",
        *,
        limit: int | None = None,
        all_parents: bool = False,
    ) -> list[dict[str, Any]]:
        """History from ``ref``, newest first (all of it, or ``limit``
        commits): first parents, or every ancestor (``all_parents``, a
        commit before its parents)."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"ref": ref, **({"all": "true"} if all_parents else {})}
        for c in self._pages(f"{self._ds(dataset)}/commits", params):
            out.append(c)
            if limit is not None and len(out) >= limit:
                break
        return out

    def compare(
        self,
        dataset: str,
        base: str,
        head: str,
        table: str | None = None,
        *,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if table:
            params["table"] = table
        url = f"{self._ds(dataset)}/compare/{_ref(base)}...{_ref(head)}"
        return dict(self.session.json("GET", url, params=params))

    def _export_params(
        self, table: str | None, format: str, columns: list[str] | None, filter: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"format": format}
        if table:
            params["table"] = table
        if columns:
            params["columns"] = ",".join(columns)
        if filter:
            params["filter"] = filter
        return params

    def export(
        self,
        dataset: str,
        ref: str = "main",
        table: str | None = None,
        *,
        format: str = "parquet",
        columns: list[str] | None = None,
        filter: str | None = None,
        to: str | os.PathLike[str] | BinaryIO,
        on_bytes: Callable[[int, int | None], None] | None = None,
    ) -> dict[str, Any]:
        """Stream an export to a path or an open binary file; the response's
        headers that matter (``etag``, ``bytes``)."""
        url = f"{self._ds(dataset)}/refs/{_ref(ref)}/export"
        params = self._export_params(table, format, columns, filter)
        with self.session.stream("GET", url, params=params, timeout=None) as r:
            total = int(r.headers["content-length"]) if "content-length" in r.headers else None
            sent = 0
            out: BinaryIO
            close = False
            if isinstance(to, str | os.PathLike):
                out, close = open(to, "wb"), True  # noqa: SIM115
            else:
                out = to
            try:
                for block in r.iter_bytes(1 << 20):
                    out.write(block)
                    sent += len(block)
                    if on_bytes is not None:
                        on_bytes(sent, total)
            finally:
                if close:
                    out.close()
            return {"etag": r.headers.get("etag"), "bytes": sent}

    def export_link(
        self,
        dataset: str,
        ref: str = "main",
        table: str | None = None,
        *,
        format: str = "parquet",
        columns: list[str] | None = None,
        filter: str | None = None,
        expires_in_seconds: int = 3600,
    ) -> str:
        """A signed URL of the export, usable without a token until it expires."""
        body = self._export_params(table, format, columns, filter)
        body["expires_in_seconds"] = expires_in_seconds
        url = f"{self._ds(dataset)}/refs/{_ref(ref)}/export-links"
        return str(self.session.json("POST", url, json=body)["url"])

    def read(
        self,
        dataset: str,
        ref: str = "main",
        table: str | None = None,
        columns: list[str] | None = None,
        filter: str | None = None,
    ) -> Any:
        """The table (or its ``columns`` and rows matching ``filter``) as a polars DataFrame."""
        import polars as pl

        buf = io.BytesIO()
        self.export(dataset, ref, table, format="parquet", columns=columns, filter=filter, to=buf)
        buf.seek(0)
        return pl.read_parquet(buf)

    def scan(self, dataset: str, ref: str = "main", table: str | None = None) -> Any:
        """A polars LazyFrame over a signed Parquet link: polars reads only
        the row groups and columns a query needs (ranged reads)."""
        import polars as pl

        return pl.scan_parquet(self.export_link(dataset, ref, table, format="parquet"))
