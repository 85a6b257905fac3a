"""A bounded cache, on each node's disk, of what a remote object store holds
(``DSA_CACHE_DIR``, ``DSA_CACHE_BYTES``; decision 0021).

Only objects that never change once written are cached: chunks, manifests,
schemas, commits and read copies' parts (their keys are content addresses,
or unique per build). They are cached in aligned blocks of ``BLOCK`` bytes
(a Parquet footer, the row groups a page reads, a chunk read whole), each
block a file of its own holding the blake3 digest of its bytes, then the
bytes; an object's size is an entry too, so a cold read skips the HEAD. A
block is checked against its digest whenever it is read from disk: a
damaged or truncated entry is deleted, logged and fetched again, never
used. Entries are written to a temporary file and renamed, so processes
sharing the directory (the API's workers, the Celery pool, an import's
child) never read half an entry, and the directory is safe to delete at
any time. The least recently used entries (by modification time, touched
at most once a minute on a hit) are deleted when the directory grows past
its budget, checked by each process every eighth of the budget it adds.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import blake3
import structlog

from core import metrics

log = structlog.get_logger(__name__)

BLOCK = 1 << 20
DIGEST = 32
TOUCH_S = 60.0  # a hit renews an entry's place in the LRU at most this often
CACHED_KINDS = ("chunks/", "manifests/", "schemas/", "commits/", "layouts/")


def cacheable(key: str) -> bool:
    """Whether ``key``'s object never changes once written."""
    return key.startswith(CACHED_KINDS)


class NodeCache:
    """Blocks of immutable objects in a directory, at most ``max_bytes`` of them."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._added = 0
        self._swept = False
        self.hits = self.misses = self.damaged = 0  # this process's, for tests and benches

    def _path(self, key: str, part: str) -> Path:
        name = blake3.blake3(key.encode()).hexdigest()[:40]
        return self.root / name[:2] / f"{name}.{part}"

    def _load(self, path: Path) -> bytes | None:
        try:
            with open(path, "rb") as f:
                raw = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except OSError:
            return None
        data = raw[DIGEST:]
        if len(raw) < DIGEST or blake3.blake3(data).digest() != raw[:DIGEST]:
            self.damaged += 1
            log.warning("a damaged cache entry was dropped", entry=path.name)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if time.time() - mtime > TOUCH_S:
            with contextlib.suppress(OSError):
                os.utime(path)
        return data

    def _save(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(blake3.blake3(data).digest())
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full or vanished disk: the read goes on uncached
            log.warning("could not write a cache entry", error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        with self._lock:
            self._added += len(data) + DIGEST
            due = not self._swept or self._added > self.max_bytes // 8
            if due:
                self._added, self._swept = 0, True
        if due:
            self.sweep()

    def size(self, key: str) -> int | None:
        got = self._load(self._path(key, "size"))
        return int(got) if got else None

    def put_size(self, key: str, size: int) -> None:
        self._save(self._path(key, "size"), str(size).encode())

    def whole(self, key: str, fetch: Callable[[], bytes]) -> bytes:
        """The whole object ``key`` (a manifest, a commit): from disk, or fetched and kept."""
        path = self._path(key, "all")
        got = self._load(path)
        if got is None:
            self.misses += 1
            metrics.CACHE_READS.labels("miss").inc()
            got = fetch()
            self._save(path, got)
        else:
            self.hits += 1
            metrics.CACHE_READS.labels("hit").inc()
        return got

    def read(
        self, key: str, start: int, end: int, size: int, fetch: Callable[[int, int], bytes]
    ) -> bytes:
        """Bytes ``start``..``end`` of ``key`` (``size`` bytes long): the
        blocks they lie in from disk, each run of missing blocks fetched with
        one ``fetch(first byte, end byte)`` and kept."""
        first, last = start // BLOCK, (end - 1) // BLOCK
        blocks: dict[int, bytes] = {}
        missing: list[int] = []
        for b in range(first, last + 1):
            got = self._load(self._path(key, str(b)))
            if got is None:
                missing.append(b)
            else:
                blocks[b] = got
        self.hits += last + 1 - first - len(missing)
        self.misses += len(missing)
        metrics.CACHE_READS.labels("hit").inc(last + 1 - first - len(missing))
        metrics.CACHE_READS.labels("miss").inc(len(missing))
        for run in _runs(missing):
            lo, hi = run[0] * BLOCK, min(size, (run[-1] + 1) * BLOCK)
            data = fetch(lo, hi)
            if len(data) != hi - lo:  # a short answer is never kept (nor used)
                raise OSError(f"{key}: {len(data)} bytes came for {hi - lo} asked")
            for b in run:
                block = data[(b - run[0]) * BLOCK : (b - run[0] + 1) * BLOCK]
                blocks[b] = block
                self._save(self._path(key, str(b)), block)
        joined = b"".join(blocks[b] for b in range(first, last + 1))
        return joined[start - first * BLOCK : end - first * BLOCK]

    def sweep(self) -> int:
        """Delete the least recently used entries until the directory is
        within 90 % of its budget; returns the bytes it holds then."""
        entries: list[tuple[float, int, str]] = []
        total = 0
        with contextlib.suppress(OSError):
            for sub in os.scandir(self.root):
                if not sub.is_dir():
                    continue
                for e in os.scandir(sub.path):
                    with contextlib.suppress(OSError):
                        st = e.stat()
                        entries.append((st.st_mtime, st.st_size, e.path))
                        total += st.st_size
        if total <= self.max_bytes:
            return total
        entries.sort()
        for _, size, path in entries:
            if total <= self.max_bytes * 0.9:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
        return total


def _runs(numbers: list[int]) -> list[list[int]]:
    """``[1, 2, 3, 7, 8]`` → ``[[1, 2, 3], [7, 8]]``."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and runs[-1][-1] == n - 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs
