"""The export stream itself: CSV/TSV rows streamed by polars from the chunks
or read chunk by chunk equal the same rows encoded batch by batch, wherever
the queries split the manifest; a stream that stops early (the client went away) leaves no thread
behind, closed directly or through the ASGI app's disconnect."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any, cast

import anyio
import polars as pl
import pytest

from features.exports import csv_stream, rows, service
from tests.features.exports.stored import ROWS, export_of


def _export_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("export")]


def _wait_no_export_threads(timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _export_threads():
        assert time.monotonic() < deadline, f"still running: {_export_threads()}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"format": "tsv", "raw": True},
        {"columns": ["at_tz", "name", "blob"], "filter": "name contains '7' and price > 100"},
        {"filter": "id >= 29990"},  # nothing in the first read, a few rows at the end
    ],
    ids=["csv", "tsv-raw", "filter-columns", "filter-tail"],
)
@pytest.mark.parametrize("lookup_rows", [0, 10**9], ids=["lookups", "no-lookups"])
@pytest.mark.parametrize("long_rows", [500, 10**9], ids=["by-polars", "by-chunk"])
def test_streamed_csv_equals_batch_by_batch(
    big: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    lookup_rows: int,
    long_rows: int,
) -> None:
    """The table's 1,000-row pieces read by polars from the chunks (long) or
    window by window chunk by chunk (short): the same bytes either way."""
    monkeypatch.setattr(csv_stream, "CSV_QUERY_PIECES", 3)  # 10 queries for the 30 pieces
    monkeypatch.setattr(csv_stream, "CSV_LONG_PIECE_ROWS", long_rows)
    monkeypatch.setattr(csv_stream, "CSV_LOOKUP_ROWS", lookup_rows)  # dates by lookup, or not
    monkeypatch.setattr(csv_stream, "SEND_BYTES", 10_000)
    ex = export_of(big, **options)
    enc = service.encoder(ex)
    expected = enc.begin() + b"".join(enc.encode(b) for b in rows.batches(ex))
    got = b"".join(service.stream(ex))
    assert got == expected
    frame = pl.read_csv(got, separator="\t" if options.get("format") == "tsv" else ",")
    if "filter" not in options:
        assert frame.height == ROWS
        assert frame["id"].to_list() == list(range(ROWS))
    if not options.get("raw") and "filter" not in options:
        assert "'=1+1" in frame["name"].to_list()  # formula-like text still neutralised
    _wait_no_export_threads()


def test_csv_helper_failure_reaches_the_response(
    big: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("chunk unreadable")

    monkeypatch.setattr(csv_stream, "_write_rows", broken)
    with pytest.raises(RuntimeError, match="chunk unreadable"):
        b"".join(service.stream(export_of(big)))
    _wait_no_export_threads()


def _counting_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    written = [0]
    write = csv_stream._Parts.write

    def counted(self: Any, data: Any) -> int:
        n = write(self, data)
        written[0] += n
        return n

    monkeypatch.setattr(csv_stream._Parts, "write", counted)
    return written


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_closing_the_stream_stops_its_threads(
    big: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    monkeypatch.setattr(csv_stream, "CSV_PARTS", 1)
    monkeypatch.setattr(csv_stream, "CSV_QUERY_PIECES", 1)
    written = _counting_writes(monkeypatch)
    full = len(b"".join(service.stream(export_of(big, format="csv"))))
    _wait_no_export_threads()
    written[0] = 0
    it = cast(Generator[bytes, None, None], service.stream(export_of(big, format=fmt)))
    for _ in range(3):  # the header (csv) or first batch, then some more
        next(it)
    assert _export_threads()
    it.close()  # what dropping a response's iterator does
    _wait_no_export_threads()
    assert written[0] < full / 2, (written[0], full)  # stopped, not run to the end


def test_client_disconnect_stops_the_export(
    app: Any, big: dict[str, Any], admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ASGI app as uvicorn drives it: the client reads a little, stops
    reading (the send blocks), then goes away (``http.disconnect``)."""
    monkeypatch.setattr(csv_stream, "CSV_PARTS", 1)
    monkeypatch.setattr(csv_stream, "CSV_QUERY_PIECES", 1)
    written = _counting_writes(monkeypatch)
    path = f"/api/v1/datasets/{big['ds']['id']}/refs/{big['commit']}/export"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # as uvicorn's httptools
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"format=csv",
        "headers": [(b"host", b"test"), (b"authorization", admin["Authorization"].encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    got: list[dict[str, Any]] = []

    async def drive() -> None:
        gone = anyio.Event()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            got.append(message)
            if len(got) >= 4:  # start, header, two parts of rows: then stall
                gone.set()
                await anyio.sleep(3600)

        with anyio.fail_after(30):
            await app(scope, receive, send)

    anyio.run(drive)
    assert got[0]["status"] == 200
    assert got[1]["body"].startswith(b"id,name,price")
    _wait_no_export_threads()
    assert written[0] < 1_000_000, written[0]  # ~2 MB in all: it stopped early
