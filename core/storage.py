"""Object store: one small protocol, chosen by ``DSA_STORAGE_URL``.

Keys look like ``chunks/<64 hex>``; the local backend fans them out by hash
prefix (``chunks/ab/cd/abcd…``) so no directory grows past a few thousand
entries. Writes go to a temporary file in the same directory and are
renamed into place, so a reader never sees a half-written object and a
crash leaves at worst a stray temp file.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

import pyarrow as pa

from core.errors import ObjectNotFound, Unavailable


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float  # seconds since the epoch


class ObjectWriter(Protocol):
    """An object written as a stream: absent until ``commit``, never after ``abort``."""

    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class ObjectStore(Protocol):
    remote: bool  # reads cross a network (coalesce them) rather than map a local file

    def open_writer(self, key: str) -> ObjectWriter: ...
    def put(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path, *, move: bool = False) -> None: ...
    def get(self, key: str) -> bytes: ...
    def open(self, key: str) -> BinaryIO: ...
    def open_arrow(self, key: str) -> pa.NativeFile: ...
    def will_read(self, key: str, start: int, length: int) -> None: ...
    def exists(self, key: str) -> bool: ...
    def stat(self, key: str) -> StoredObject | None: ...
    def touch(self, key: str) -> None: ...
    def delete(self, key: str) -> None: ...
    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]: ...
    def check(self) -> None: ...
    def presign(self, key: str, *, seconds: int, filename: str, media_type: str) -> str | None: ...
    def list(self, kind: str) -> Iterator[StoredObject]: ...
    def clean_partial(self, kind: str, older_than_s: float) -> int: ...


class LocalStore:
    """A directory on a local or shared file system."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        kind, _, name = key.partition("/")
        if not kind or not name or ".." in key or key.startswith("/"):
            raise ValueError(f"bad object key {key!r}")
        if len(name) >= 8 and all(c in "0123456789abcdef" for c in name):
            return self.root / kind / name[:2] / name[2:4] / name
        return self.root / kind / name

    def _tmp_for(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._tmp_for(path)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        dest = self._path(key)
        tmp = self._tmp_for(dest)
        if move:
            try:
                os.replace(path, tmp)
            except OSError:  # another file system: copy instead
                shutil.copyfile(path, tmp)
                path.unlink(missing_ok=True)
        else:
            shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def open_writer(self, key: str) -> ObjectWriter:
        """A temporary file beside the object, renamed into place on commit."""
        return _LocalWriter(self._path(key), self._tmp_for(self._path(key)))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} is missing") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} is missing") from None

    def open_arrow(self, key: str) -> pa.NativeFile:
        """A file Arrow reads natively (memory-mapped): no Python in the read path."""
        try:
            return pa.memory_map(str(self._path(key)))
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} is missing") from None

    def will_read(self, key: str, start: int, length: int) -> None:
        """A hint: bytes ``[start, start + length)`` of the object are read
        soon. The kernel reads them ahead in large requests
        (``POSIX_FADV_WILLNEED``) instead of page by page as a mapped file's
        reads fault them in (measured: a re-uploaded version's CSV export
        from a cold cache ran at 0.8x of a warm one's without it)."""
        if not hasattr(os, "posix_fadvise"):  # not on macOS or Windows
            return
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except OSError:
            return  # a missing object is reported by the read itself
        try:
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def stat(self, key: str) -> StoredObject | None:
        """The object's size and time of writing; None when there is none."""
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return StoredObject(key, st.st_size, st.st_mtime)

    def touch(self, key: str) -> None:
        """Make the object's time of writing now (its bytes untouched)."""
        try:
            os.utime(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"object {key} is missing") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.exists():
            raise ObjectNotFound(f"object {key} is missing")
        yield path

    def presign(self, key: str, *, seconds: int, filename: str, media_type: str) -> str | None:
        """None: a directory has no URLs of its own (the API serves its files)."""
        return None

    def _files(self, kind: str) -> Iterator[tuple[str, os.stat_result, Path]]:
        top = self.root / kind.strip("/")
        for dirpath, _, names in os.walk(top):
            for name in names:
                path = Path(dirpath) / name
                try:
                    yield name, path.stat(), path
                except FileNotFoundError:
                    continue

    def _key_of(self, kind: str, path: Path) -> str:
        """The key a file under ``kind`` stores (``_path`` backwards)."""
        kind = kind.strip("/")
        rel = path.relative_to(self.root / kind).parts
        name = rel[-1]
        if len(rel) == 3 and self._path(f"{kind}/{name}") == path:
            return f"{kind}/{name}"  # fanned out by hash prefix
        return f"{kind}/{'/'.join(rel)}"

    def list(self, kind: str) -> Iterator[StoredObject]:
        """The objects of one kind (``uploads``, ``layouts``): their keys,
        sizes and times of writing."""
        for name, st, path in self._files(kind):
            if not name.startswith("."):
                yield StoredObject(self._key_of(kind, path), st.st_size, st.st_mtime)

    def clean_partial(self, kind: str, older_than_s: float) -> int:
        """Delete the temporary files of writes of one kind that never
        completed (a process killed mid-write) older than ``older_than_s``."""
        cutoff, removed = time.time() - older_than_s, 0
        for name, st, path in self._files(kind):
            if name.startswith(".") and name.endswith(".tmp") and st.st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def check(self) -> None:
        probe = self.root / ".readyz"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise Unavailable(f"object store at {self.root} is not writable: {exc}") from exc


class _LocalWriter:
    def __init__(self, dest: Path, tmp: Path) -> None:
        self.dest, self.tmp = dest, tmp
        self.file = open(tmp, "wb")  # noqa: SIM115 - closed by commit or abort

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.dest)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


# Keys ending so hold their object's bytes zstd-compressed (uploads on a
# remote store: a CSV crosses the network and sits in the bucket at ~1/3 of
# its size); ``writer``, ``put_local`` and ``fetched`` compress and
# decompress them, and are the identity for other keys.
COMPRESSED = ".zst"
_COPY = 1 << 20


class _Zstd:
    """An ``ObjectWriter`` that compresses on the way (zstd level 1)."""

    def __init__(self, inner: ObjectWriter) -> None:
        import zstandard

        self.inner = inner
        # on up to 4 threads (native, outside the GIL): ~370 MB/s on 2 cores
        # here against ~220 on one, the same 2.7x on the benchmark CSV
        threads = min(4, os.cpu_count() or 1)
        self.z = zstandard.ZstdCompressor(level=1, threads=threads).compressobj()

    def write(self, data: bytes) -> None:
        out = self.z.compress(data)
        if out:
            self.inner.write(out)

    def commit(self) -> None:
        self.inner.write(self.z.flush())
        self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()


def writer(store: ObjectStore, key: str) -> ObjectWriter:
    """A streamed write of ``key``, compressed when the key says so."""
    w = store.open_writer(key)
    return _Zstd(w) if key.endswith(COMPRESSED) else w


def put_local(store: ObjectStore, key: str, path: Path) -> None:
    """Move the file at ``path`` into ``key``, compressed when the key says so."""
    if not key.endswith(COMPRESSED):
        store.put_file(key, path, move=True)
        return
    w = writer(store, key)
    try:
        with open(path, "rb") as f:
            while block := f.read(_COPY):
                w.write(block)
    except BaseException:
        w.abort()
        raise
    w.commit()
    path.unlink(missing_ok=True)


@contextmanager
def fetched(store: ObjectStore, key: str, *, max_bytes: int, work: Path) -> Iterator[Path]:
    """The object ``key`` as a local file (decompressed into ``work`` when the
    key says so, at most ``max_bytes``: a damaged object cannot fill the
    disk; the compressed download is gone before the caller reads)."""
    if not key.endswith(COMPRESSED):
        with store.local_path(key) as path:
            yield path
        return
    import zstandard

    work.mkdir(parents=True, exist_ok=True)
    out = work / f"fetched-{uuid.uuid4().hex}"
    try:
        with store.local_path(key) as path, open(path, "rb") as src, open(out, "wb") as dst:
            reader = zstandard.ZstdDecompressor().stream_reader(src)
            total = 0
            while block := reader.read(_COPY):
                total += len(block)
                if total > max_bytes:
                    raise ValueError(f"object {key} holds more than {max_bytes} bytes")
                dst.write(block)
        yield out
    finally:
        out.unlink(missing_ok=True)


def store_from_url(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    cache_dir: Path | None = None,
    cache_bytes: int = 0,
    s3_public_endpoint_url: str | None = None,
) -> ObjectStore:
    """``file:///path`` (a directory) or ``s3://bucket/prefix`` (``core.s3``;
    ``s3_endpoint_url`` for an S3-compatible server; ``cache_dir`` and
    ``cache_bytes`` for the node's cache of what it reads, ``core.cache``:
    a local store needs none)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(
                f"an s3:// storage URL names a bucket: s3://bucket/prefix, not {url!r}"
            )
        from core.cache import NodeCache
        from core.s3 import S3Store

        cache = NodeCache(cache_dir, cache_bytes) if cache_dir and cache_bytes > 0 else None
        return S3Store(
            parsed.netloc,
            unquote(parsed.path),
            endpoint_url=s3_endpoint_url,
            cache=cache,
            public_endpoint_url=s3_public_endpoint_url,
        )
    raise ValueError(
        f"unsupported storage URL scheme {parsed.scheme!r} (file:// and s3:// are supported)"
    )


@lru_cache(maxsize=4)
def _store(
    url: str, endpoint: str | None, cache: tuple[Path, int], public: str | None
) -> ObjectStore:
    return store_from_url(
        url,
        s3_endpoint_url=endpoint,
        cache_dir=cache[0],
        cache_bytes=cache[1],
        s3_public_endpoint_url=public,
    )


# A writer that finds the object it would write already stored writes it
# again when that copy is older than this: garbage collection deletes only
# objects unreferenced *and* written before its cutoff (at least 10 minutes
# ago outside tests), so an object a running writer relies on is never one
# it may delete (features/integrity/gc.py, docs/decisions/0024).
REFRESH_AFTER_S = 300.0


def needs_write(store: ObjectStore, key: str) -> bool:
    """Whether a writer of the content-addressed ``key`` must store it: it is
    missing. One stored over ``REFRESH_AFTER_S`` ago has its time of writing
    made now instead (``touch``: not its bytes, which readers and caches
    hold as they are), so a concurrent garbage collection cannot take it
    from under the writer."""
    st = store.stat(key)
    if st is None:
        return True
    if st.modified < time.time() - REFRESH_AFTER_S:
        try:
            store.touch(key)
        except ObjectNotFound:
            return True  # gone meanwhile
    return False


def uncached(store: ObjectStore) -> ObjectStore:
    """The same store without the node's cache (a check must read what the
    bucket holds, not what this node kept of it)."""
    from core.s3 import S3Store

    if isinstance(store, S3Store) and store.cache is not None:
        return S3Store(
            store.bucket,
            store.prefix,
            endpoint_url=store.endpoint_url,
            region=store.region,
            public_endpoint_url=store.public_endpoint_url,
        )
    return store


def get_store() -> ObjectStore:
    from core.config import get_settings

    s = get_settings()
    cache = (s.effective_cache_dir, s.cache_bytes)
    return _store(s.effective_storage_url, s.s3_endpoint_url, cache, s.s3_public_endpoint_url)
