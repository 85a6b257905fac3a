"""Progress bars for uploads and downloads (rich), and the upload's Ctrl-C:
during the import it asks the server to cancel the job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dsa.client import Client, _ref


def _bars(quiet: bool) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        disable=quiet,
        transient=False,
    )


def upload_with_progress(
    client: Client,
    dataset: str,
    path: str,
    *,
    branch: str,
    table: str | None,
    mode: str,
    message: str | None,
    wait: bool,
    quiet: bool,
) -> dict[str, Any]:
    """Two bars: bytes sent, then the import (bytes parsed, rows so far)."""
    size = Path(path).stat().st_size if Path(path).is_file() else None
    with _bars(quiet) as bars:
        sent = bars.add_task("upload", total=size, note="")
        job = client.upload(
            dataset, path, branch, table, mode, message, wait=False,
            on_bytes=lambda n: bars.update(sent, completed=n),
        )  # fmt: skip
        bars.update(sent, completed=size)
        if not wait:
            return job
        imported = bars.add_task("import", total=size, note="queued")

        def follow(j: dict[str, Any]) -> None:
            p = j.get("progress") or {}
            bars.update(
                imported,
                completed=p.get("bytes") or 0,
                total=p.get("total_bytes") or size,
                note=f"{p.get('rows') or 0:,} rows" if j["state"] == "running" else j["state"],
            )

        try:
            return client.wait(job["id"], follow)
        except KeyboardInterrupt:
            bars.update(imported, note="cancelling")
            try:
                client.cancel(job["id"])
            finally:
                raise


def export_with_progress(
    client: Client,
    dataset: str,
    ref: str,
    table: str | None,
    fmt: str,
    output: str,
    *,
    quiet: bool,
    resume: bool = False,
) -> dict[str, Any]:
    """Stream an export to ``output`` through ``output.part``; with
    ``resume`` (Parquet), a ``.part`` left by an interrupted download is
    continued by range when the server still has the same file (its ETag)."""
    out = Path(output)
    part = out.with_name(out.name + ".part")
    tag_file = out.with_name(out.name + ".part.etag")
    params: dict[str, Any] = {"format": fmt, **({"table": table} if table else {})}
    headers: dict[str, str] = {}
    have = 0
    if resume and fmt == "parquet" and part.exists() and tag_file.exists():
        have = part.stat().st_size
        headers = {"Range": f"bytes={have}-", "If-Range": tag_file.read_text().strip()}
    url = f"/api/v1/datasets/{dataset}/refs/{_ref(ref)}/export"
    with (
        _bars(quiet) as bars,
        client.session.stream("GET", url, params=params, headers=headers, timeout=None) as r,
    ):
        etag = r.headers.get("etag")
        if r.status_code != 206:
            have = 0
        length = r.headers.get("content-length")
        total = have + int(length) if length else None
        task = bars.add_task("download", total=total, completed=have, note="")
        if etag:
            tag_file.write_text(etag)
        with open(part, "ab" if have else "wb") as f:
            for block in r.iter_bytes(1 << 20):
                f.write(block)
                bars.advance(task, len(block))
        written = part.stat().st_size
    os.replace(part, out)
    tag_file.unlink(missing_ok=True)
    return {"path": str(out), "bytes": written, "etag": etag, "resumed_from": have or None}
