"""The line index in the object store (decision 0014; ``lines`` uses it).

One object per (dataset, branch, table) under ``lines/``: a magic line, a
JSON head (the table it describes, its fingerprint, a MAC) and the 16-byte
hash of each data line in row order. The line hashes are keyed with the
installation's secret and the file is authenticated, so whoever can write
the object store or choose a file's lines still cannot make two different
lines pair, nor make an index that verifies.
"""

from __future__ import annotations

import hmac
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import blake3
import structlog

from core.config import get_settings
from core.errors import DsaError
from core.objects import TableEntry
from core.storage import get_store

log = structlog.get_logger(__name__)
# v2: lines hashed with the installation's secret, the file authenticated
# (a v1 index, unkeyed, is never read: that import reads the file in full)
MAGIC = b"dsa.lines.v2\n"

# 16-byte line hashes one after the other
Hashes = bytes | bytearray | memoryview


class LineIndex(NamedTuple):
    table: tuple[str, str]  # (schema id, manifest id) of the table it describes
    fingerprint: dict[str, Any]
    hashes: Hashes  # 16 bytes a data line, in row order


def line_secret() -> bytes:
    """XXH3's secret for line hashes: 192 bytes drawn from the installation's
    ``line-hash`` key (``Settings.key``), never stored with the data, so
    whoever can write the object store or choose a file's lines still cannot
    make two different lines pair."""
    return _secret_of(get_settings().key("line-hash"))


@lru_cache(maxsize=4)
def _secret_of(key: bytes) -> bytes:
    return blake3.blake3(b"xxh3 secret", key=key).digest(length=192)


def _mac(dataset_id: Any, branch: str, table: str, head: dict[str, Any], hashes: Hashes) -> str:
    """The index file's MAC: keyed BLAKE3 over where it belongs (dataset,
    branch, table), what it describes (schema, manifest, fingerprint) and
    every line hash. A file moved, edited or made by anyone without the
    installation's key does not verify, and is not read."""
    mac = blake3.blake3(key=get_settings().key("line-index"))
    mac.update(f"{dataset_id}\0{branch}\0{table}\0".encode())
    mac.update(json.dumps(head, sort_keys=True).encode() + b"\0")
    mac.update(hashes)
    return str(mac.hexdigest())


def index_key(dataset_id: Any, branch: str, table: str) -> str:
    name = blake3.blake3(f"{dataset_id}\0{branch}\0{table}".encode()).hexdigest()[:40]
    return f"lines/{name}"


def load(dataset_id: Any, branch: str, table: str, entry: TableEntry) -> LineIndex | None:
    """The index of ``table`` on the branch, if it describes ``entry``
    (missing, damaged, stale or unreachable: None, and the import reads in full)."""
    try:
        raw = get_store().get(index_key(dataset_id, branch, table))
    except DsaError:
        return None
    if not raw.startswith(MAGIC):
        return None
    end = raw.find(b"\n", len(MAGIC))
    try:
        head = json.loads(raw[len(MAGIC) : end])
        mac = head.pop("mac")
        table_of = (head["schema"], head["manifest"])
        fingerprint = head["fingerprint"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    hashes = raw[end + 1 :]
    if end < 0 or table_of != (entry.schema, entry.manifest) or len(hashes) != 16 * entry.row_count:
        return None
    if not isinstance(mac, str) or not hmac.compare_digest(
        mac.encode(), _mac(dataset_id, branch, table, head, hashes).encode()
    ):
        log.warning(
            "line index refused: it does not verify", key=index_key(dataset_id, branch, table)
        )
        return None
    return LineIndex(table_of, fingerprint, hashes)


def save(dataset_id: Any, branch: str, table: str, index: LineIndex) -> None:
    """Replace the branch's index of ``table`` in the object store (written
    whole: any worker of any node finds it; a put is atomic)."""
    head: dict[str, Any] = {
        "schema": index.table[0],
        "manifest": index.table[1],
        "fingerprint": index.fingerprint,
    }
    head["mac"] = _mac(dataset_id, branch, table, head, index.hashes)
    tmp_dir = get_settings().tmp_dir
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="lines-", dir=tmp_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n")
            f.write(index.hashes)
        get_store().put_file(index_key(dataset_id, branch, table), path, move=True)
    finally:
        path.unlink(missing_ok=True)
