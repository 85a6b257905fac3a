"""The line index in the object store (decision 0014; ``lines`` uses it).

One object per (dataset, branch, table) under ``lines/``: a magic line, a
JSON head (the table it describes, its fingerprint, a MAC) and the 16-byte
hash of each data line in row order. The line hashes are keyed with the
installation's secret and the file is authenticated, so whoever can write
the object store or choose a file's lines still cannot make two different
lines pair, nor make an index that verifies.

Hashes live in files of the job's work directory (``Records``), never in
memory whole: a 100M-row table's index is 1.6 GB, its scan as much again
(issue 19). An index is streamed from the store to such a file while its
MAC is checked, and streamed back when it is saved.
"""

from __future__ import annotations

import hmac
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import blake3
import numpy as np
import structlog

from core.config import get_settings
from core.errors import DsaError
from core.objects import TableEntry
from core.storage import get_store

log = structlog.get_logger(__name__)
# v2: lines hashed with the installation's secret, the file authenticated
# (a v1 index, unkeyed, is never read: that import reads the file in full)
MAGIC = b"dsa.lines.v2\n"

BLOCK = 1 << 24  # bytes a read or write of a record file moves at once
HEAD_MAX = 1 << 16  # an index's head line is far shorter; past it, not an index


@dataclass(frozen=True)
class Records:
    """16-byte records one after the other in a file: ``count`` of them from
    byte ``offset`` (line hashes, or the (start, end) places of lines as two
    little-endian int64)."""

    path: Path
    offset: int
    count: int

    def read(self, lo: int, hi: int) -> bytes:
        """Records ``lo`` to ``hi`` (clipped to the file's), as bytes."""
        hi = min(hi, self.count)
        if hi <= lo:
            return b""
        with open(self.path, "rb") as f:
            got = os.pread(f.fileno(), 16 * (hi - lo), self.offset + 16 * lo)
        if len(got) != 16 * (hi - lo):
            raise OSError(f"{self.path} is shorter than its records")
        return got

    def words(self, lo: int, hi: int, dtype: str = "<u8") -> np.ndarray:
        """Records ``lo`` to ``hi`` as an (n, 2) array of 8-byte words."""
        return np.frombuffer(self.read(lo, hi), dtype=dtype).reshape(-1, 2)

    def blocks(self) -> Iterator[bytes]:
        """Every record, ``BLOCK`` bytes at a time."""
        step = BLOCK // 16
        for lo in range(0, self.count, step):
            yield self.read(lo, lo + step)

    def all(self) -> bytes:
        """Every record at once (for small files)."""
        return self.read(0, self.count)

    def after(self, skip: int) -> Records:
        """The records past the first ``skip``."""
        skip = min(skip, self.count)
        return Records(self.path, self.offset + 16 * skip, self.count - skip)


class RecordWriter:
    """Appends 16-byte records to a new file (``Records`` once closed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "wb")  # noqa: SIM115 - closed by ``close``
        self.bytes = 0

    @property
    def count(self) -> int:
        return self.bytes // 16

    def add(self, data: bytes | np.ndarray) -> None:
        raw = memoryview(data if isinstance(data, bytes) else data.data).cast("B")
        self.file.write(raw)
        self.bytes += len(raw)

    def close(self) -> Records:
        self.file.close()
        return Records(self.path, 0, self.count)


class LineIndex(NamedTuple):
    table: tuple[str, str]  # (schema id, manifest id) of the table it describes
    fingerprint: dict[str, Any]
    hashes: Records  # 16 bytes a data line, in row order


def line_secret() -> bytes:
    """XXH3's secret for line hashes: 192 bytes drawn from the installation's
    ``line-hash`` key (``Settings.key``), never stored with the data, so
    whoever can write the object store or choose a file's lines still cannot
    make two different lines pair."""
    return _secret_of(get_settings().key("line-hash"))


@lru_cache(maxsize=4)
def _secret_of(key: bytes) -> bytes:
    return blake3.blake3(b"xxh3 secret", key=key).digest(length=192)


def _mac(dataset_id: Any, branch: str, table: str, head: dict[str, Any]) -> Any:
    """The index file's MAC: keyed BLAKE3 over where it belongs (dataset,
    branch, table), what it describes (schema, manifest, fingerprint) and
    every line hash. A file moved, edited or made by anyone without the
    installation's key does not verify, and is not read."""
    mac = blake3.blake3(key=get_settings().key("line-index"), max_threads=blake3.blake3.AUTO)
    mac.update(f"{dataset_id}\0{branch}\0{table}\0".encode())
    mac.update(json.dumps(head, sort_keys=True).encode() + b"\0")
    return mac  # fed every line hash by the caller


def index_key(dataset_id: Any, branch: str, table: str) -> str:
    name = blake3.blake3(f"{dataset_id}\0{branch}\0{table}".encode()).hexdigest()[:40]
    return f"lines/{name}"


def load(
    dataset_id: Any, branch: str, table: str, entry: TableEntry, work: Path
) -> LineIndex | None:
    """The index of ``table`` on the branch, if it describes ``entry``
    (missing, damaged, stale or unreachable: None, and the import reads in
    full), streamed to a file in ``work`` while its MAC is checked."""
    key = index_key(dataset_id, branch, table)
    path: Path | None = None
    try:
        with get_store().open(key) as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            line = f.readline(HEAD_MAX)
            head = _head(line, entry)
            if head is None:
                return None
            mac = head.pop("mac")
            check = _mac(dataset_id, branch, table, head)
            path = work_file(work, "index")
            out = RecordWriter(path)
            try:
                left = 16 * entry.row_count + 1  # one byte more than it may hold: too long
                while left > 0 and (block := f.read(min(BLOCK, left))):
                    check.update(block)
                    out.add(block)
                    left -= len(block)
            finally:
                hashes = out.close()
    except (DsaError, OSError):
        if path is not None:
            path.unlink(missing_ok=True)
        return None
    if path.stat().st_size != 16 * entry.row_count or not hmac.compare_digest(
        mac.encode(), check.hexdigest().encode()
    ):
        log.warning("line index refused: it does not verify", key=key)
        path.unlink(missing_ok=True)
        return None
    return LineIndex((head["schema"], head["manifest"]), head["fingerprint"], hashes)


def _head(line: bytes, entry: TableEntry) -> dict[str, Any] | None:
    """The index's head line, when it is one and describes ``entry``."""
    if not line.endswith(b"\n"):
        return None
    try:
        head = json.loads(line)
        table_of = (head["schema"], head["manifest"])
        ok = isinstance(head["fingerprint"], dict) and isinstance(head["mac"], str)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not ok or table_of != (entry.schema, entry.manifest):
        return None
    return dict(head)


def work_file(work: Path, kind: str) -> Path:
    """A new empty file in ``work`` for records of ``kind``."""
    work.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"lines-{kind}-", dir=work)
    os.close(fd)
    return Path(name)


def save(dataset_id: Any, branch: str, table: str, index: LineIndex) -> None:
    """Replace the branch's index of ``table`` in the object store (written
    whole: any worker of any node finds it; a put is atomic)."""
    head: dict[str, Any] = {
        "schema": index.table[0],
        "manifest": index.table[1],
        "fingerprint": index.fingerprint,
    }
    mac = _mac(dataset_id, branch, table, head)
    for block in index.hashes.blocks():
        mac.update(block)
    head["mac"] = mac.hexdigest()
    line = MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n"
    if len(line) - len(MAGIC) > HEAD_MAX:  # ``load`` would refuse it: keep none
        log.info("line index not kept: its head is too long", bytes=len(line))
        return
    path = work_file(get_settings().tmp_dir, "save")
    try:
        with open(path, "wb") as f:
            f.write(line)
            for block in index.hashes.blocks():
                f.write(block)
        get_store().put_file(index_key(dataset_id, branch, table), path, move=True)
    finally:
        path.unlink(missing_ok=True)
