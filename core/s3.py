"""The S3 object store (``DSA_STORAGE_URL=s3://bucket/prefix``), through boto3.

Three clients were measured on the same S3 server before boto3 was chosen
(decision 0020). obstore read fastest (ranged GET 3.3 ms, HEAD 1.9 ms
against boto3's 4.6 and 3.1) but is not fork-safe: once a process has used
it, a forked child hangs on its first request (its Tokio runtime's threads
do not survive ``fork``), and DSA forks a child for every import and runs
Celery's prefork pool. boto3 and pyarrow's S3 filesystem both work in a
forked child; boto3 has the whole S3 API the next steps need (multipart
uploads, presigned URLs, precise error codes) in one well-kept library.

A client is made per process (a forked child makes its own). An S3 PUT, or
a completed multipart upload (``upload_file`` splits large files), is
atomic: an object is absent or whole. Reads of Parquet go by ranged GETs
(``_Reader``). Keys are the object store's keys (``chunks/<64 hex>``)
under the URL's prefix; a key that could leave the prefix is refused.
Errors never carry credentials: a missing object is ``ObjectNotFound``;
anything else the store answers (unreachable, denied, no such bucket) is
``Unavailable`` naming the bucket and the operation, not the message.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

import pyarrow as pa
import structlog

from core import metrics
from core.cache import NodeCache, cacheable
from core.errors import ObjectNotFound, ObjectStoreUnavailable
from core.storage import StoredObject

log = structlog.get_logger(__name__)
READ_AHEAD = 1 << 20  # a ranged GET fetches at least this much (footers, row groups)
MAX_READ_AHEAD = 16 << 20  # and, while reads follow each other, up to this much
PART_BYTES = 16 * 1024**2  # files larger than 4 parts are moved in parts of this size,
TRANSFER_THREADS = 4  # this many at a time: at most 64 MiB of buffers per transfer
_MISSING = ("404", "NoSuchKey", "NotFound")


def check_key(key: str) -> str:
    """``key`` as the store's key, or ValueError: never empty, absolute, or
    climbing out of the prefix."""
    kind, _, name = key.partition("/")
    if not kind or not name or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise ValueError(f"bad object key {key!r}")
    return key


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in _MISSING


def _started(context: dict[str, Any], **_: Any) -> None:
    context["dsa_started"] = time.perf_counter()


def _answered(context: dict[str, Any], model: Any, **_: Any) -> None:
    """Each S3 request's latency, by operation (boto3's event hooks)."""
    started = context.get("dsa_started")
    if started is not None:
        metrics.STORE_SECONDS.labels(model.name).observe(time.perf_counter() - started)


def _transfer() -> Any:
    """Bounded multipart transfers (boto3's default holds up to 10 parts)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=4 * PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=TRANSFER_THREADS,
        io_chunksize=1024**2,
    )


class _Reader(io.RawIOBase):
    """An object as a seekable binary file whose reads are ranged GETs.

    A GET fetches at least ``READ_AHEAD``; while reads follow each other
    (a whole file streamed, a Parquet row group's column chunks) each next
    GET fetches twice as much, up to ``MAX_READ_AHEAD``, so a stream costs
    a few large GETs rather than one per megabyte; a jump (a footer, another
    row group) starts again small."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self._store, self._key, self._size = store, key, size
        self._pos = 0
        self._buf, self._buf_at = b"", 0
        self._window = READ_AHEAD

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def readinto(self, b: Any) -> int:
        want = min(len(b), self._size - self._pos)
        if want <= 0:
            return 0
        at = self._pos - self._buf_at
        if not (at >= 0 and at + want <= len(self._buf)):
            following = self._buf and self._pos == self._buf_at + len(self._buf)
            self._window = min(MAX_READ_AHEAD, 2 * self._window) if following else READ_AHEAD
            end = min(self._size, self._pos + max(want, self._window))
            self._buf = self._store._read(self._key, self._pos, end, self._size)  # noqa: SLF001
            self._buf_at, at = self._pos, 0
        memoryview(b)[:want] = self._buf[at : at + want]
        self._pos += want
        return want


class _Writer:
    """An object streamed to S3: invisible until ``commit`` completes it.
    Parts go up on ``TRANSFER_THREADS`` threads while the next ones are
    written (at most that many parts in memory), as ``upload_file`` does."""

    def __init__(self, store: S3Store, name: str, key: str) -> None:
        self.store, self.name, self.key = store, name, key
        self.buf = bytearray()
        self.upload_id: str | None = None
        self.sent: list[Future[dict[str, Any]]] = []
        self._pool: ThreadPoolExecutor | None = None

    def _part(self, number: int, data: bytes) -> dict[str, Any]:
        got = self.store._client.upload_part(  # noqa: SLF001
            Bucket=self.store.bucket,
            Key=self.name,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"ETag": got["ETag"], "PartNumber": number}

    def _send_part(self, data: bytes) -> None:
        if self.upload_id is None:
            got = self.store._client.create_multipart_upload(  # noqa: SLF001
                Bucket=self.store.bucket, Key=self.name
            )
            self.upload_id = got["UploadId"]
            self._pool = ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="s3-part")
        assert self._pool is not None
        running = [f for f in self.sent if not f.done()]
        if len(running) >= TRANSFER_THREADS:
            running[0].result()  # back-pressure: bounded memory
        self.sent.append(self._pool.submit(self._part, len(self.sent) + 1, data))

    def write(self, data: bytes) -> None:
        self.buf += data
        try:
            while len(self.buf) >= PART_BYTES:
                self._send_part(bytes(self.buf[:PART_BYTES]))
                del self.buf[:PART_BYTES]
        except Exception as exc:
            self.abort()
            raise self.store._fail("write", self.key, exc) from None  # noqa: SLF001

    def commit(self) -> None:
        client = self.store._client  # noqa: SLF001
        try:
            if self.upload_id is None:
                client.put_object(Bucket=self.store.bucket, Key=self.name, Body=bytes(self.buf))
            else:
                if self.buf:
                    self._send_part(bytes(self.buf))
                parts = [f.result() for f in self.sent]
                client.complete_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.name,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except Exception as exc:
            self.abort()
            raise self.store._fail("write", self.key, exc) from None  # noqa: SLF001
        finally:
            self._close_pool()
        self.buf = bytearray()

    def abort(self) -> None:
        self.buf = bytearray()
        self._close_pool()
        if self.upload_id is not None:
            with contextlib.suppress(Exception):
                self.store._client.abort_multipart_upload(  # noqa: SLF001
                    Bucket=self.store.bucket, Key=self.name, UploadId=self.upload_id
                )
            self.upload_id = None

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class S3Store:
    """A bucket (and a prefix in it) of S3 or an S3-compatible server."""

    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        cache: NodeCache | None = None,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.cache = cache
        self.public_endpoint_url = public_endpoint_url
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self._client_pid = self._signer_pid = -1
        self._client_obj: Any = None
        self._signer_obj: Any = None

    @property
    def _client(self) -> Any:
        """This process's client: a forked child makes its own."""
        if self._client_pid != os.getpid():
            self._client_obj = self._new_client(self.endpoint_url)
            self._client_pid = os.getpid()
        return self._client_obj

    def _new_client(self, endpoint_url: str | None) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"} if endpoint_url else {},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
            signature_version="s3v4",
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=self.region, config=config
        )
        client.meta.events.register("before-call.s3.*", _started)
        client.meta.events.register("after-call.s3.*", _answered)
        return client

    def presign(self, key: str, *, seconds: int, filename: str, media_type: str) -> str | None:
        """A URL that GETs ``key`` without credentials for ``seconds``, the
        download named ``filename``; signed for the public endpoint when the
        servers reach the bucket by another name than clients do. Signing is
        local: no request is made."""
        from urllib.parse import quote

        signer = self._client
        if self.public_endpoint_url:  # one signing client a process, as for requests
            if self._signer_pid != os.getpid():
                self._signer_obj = self._new_client(self.public_endpoint_url)
                self._signer_pid = os.getpid()
            signer = self._signer_obj
        ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_")
        disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "ResponseContentDisposition": disposition,
            "ResponseContentType": media_type,
        }
        return str(signer.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, key: str, exc: Exception) -> Exception:
        if _missing(exc):
            return ObjectNotFound(f"object {key} is missing")
        metrics.STORE_ERRORS.labels(what).inc()
        log.warning(
            "object store error", bucket=self.bucket, op=what, key=key, error=type(exc).__name__
        )
        return ObjectStoreUnavailable(
            f"the object store (bucket {self.bucket!r}) did not answer a {what} of {key}; "
            "try again shortly"
        )

    def _read(self, key: str, start: int, end: int, size: int) -> bytes:
        """Bytes ``start``..``end`` of ``key``: through the node's cache
        when the object is immutable, else one ranged GET."""
        if self.cache is not None and cacheable(key):
            return self.cache.read(key, start, end, size, lambda a, b: self._range(key, a, b))
        return self._range(key, start, end)

    def _range(self, key: str, start: int, end: int) -> bytes:
        try:
            got = self._client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end - 1}"
            )
            return bytes(got["Body"].read())
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except Exception as exc:
            raise self._fail("write", key, exc) from None

    def open_writer(self, key: str) -> _Writer:
        """A streamed upload: parts of ``PART_BYTES`` go up as they fill
        (S3's multipart upload), a small object in one PUT on commit."""
        return _Writer(self, self._key(key), key)

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        name = self._key(key)
        try:
            if Path(path).stat().st_size <= 4 * PART_BYTES:  # one PUT, streamed from the file
                with open(path, "rb") as body:
                    self._client.put_object(Bucket=self.bucket, Key=name, Body=body)
            else:
                self._client.upload_file(str(path), self.bucket, name, Config=_transfer())
        except Exception as exc:
            raise self._fail("write", key, exc) from None
        if move:
            Path(path).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        if self.cache is not None and cacheable(key):
            return self.cache.whole(key, lambda: self._get(key))
        return self._get(key)

    def _get(self, key: str) -> bytes:
        name = self._key(key)
        try:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=name)["Body"].read())
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def _size(self, key: str, *, cached: bool = True) -> int:
        """The object's size: a HEAD, or the node's cache for an immutable object."""
        cache = self.cache if cached and cacheable(key) else None
        if cache is not None and (size := cache.size(key)) is not None:
            return size
        name = self._key(key)
        try:
            size = int(self._client.head_object(Bucket=self.bucket, Key=name)["ContentLength"])
        except Exception as exc:
            raise self._fail("lookup", key, exc) from None
        if cache is not None:
            cache.put_size(key, size)
        return size

    def open(self, key: str) -> BinaryIO:
        """A seekable reader whose reads are ranged GETs."""
        return cast(BinaryIO, io.BufferedReader(_Reader(self, key, self._size(key)), READ_AHEAD))

    def open_arrow(self, key: str) -> pa.NativeFile:
        """A random-access file Arrow reads by ranged GETs (footers, row groups)."""
        return pa.PythonFile(_Reader(self, key, self._size(key)), mode="r")

    def will_read(self, key: str, start: int, length: int) -> None:
        """Nothing: Arrow's pre-buffering coalesces a read's ranged GETs, and
        files read whole (``local_path``) are downloaded first."""

    def exists(self, key: str) -> bool:
        try:
            self._size(key, cached=False)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> StoredObject | None:
        """The object's size and time of writing (a HEAD); None when there is none."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            err = self._fail("lookup", key, exc)
            if isinstance(err, ObjectNotFound):
                return None
            raise err from None
        return StoredObject(key, int(head["ContentLength"]), head["LastModified"].timestamp())

    def touch(self, key: str) -> None:
        """Make the object's time of writing now: a copy onto itself, bytes
        kept (S3 allows it with new metadata)."""
        name = self._key(key)
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=name,
                CopySource={"Bucket": self.bucket, "Key": name},
                Metadata={"dsa-touched": str(int(time.time()))},
                MetadataDirective="REPLACE",
            )
        except Exception as exc:
            raise self._fail("touch", key, exc) from None

    def delete(self, key: str) -> None:
        name = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            err = self._fail("delete", key, exc)
            if not isinstance(err, ObjectNotFound):
                raise err from None

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """The object downloaded to a temporary file, deleted afterwards."""
        from core.config import get_settings

        name = self._key(key)
        tmp_dir = get_settings().tmp_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="object-", dir=tmp_dir)
        os.close(fd)
        path = Path(tmp)
        try:
            if self.cache is not None and cacheable(key):
                # through the node's cache: a chunk an export reads whole
                # (polars scans files) comes from disk the next time
                with self.open(key) as src, open(path, "wb") as out:
                    shutil.copyfileobj(src, out, MAX_READ_AHEAD)
                yield path
                return
            try:  # one stream, 1 MiB at a time: memory stays flat whatever the size
                body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
                with open(path, "wb") as out:
                    for part in body.iter_chunks(READ_AHEAD):
                        out.write(part)
            except Exception as exc:
                raise self._fail("read", key, exc) from None
            yield path
        finally:
            path.unlink(missing_ok=True)

    def list(self, kind: str) -> Iterator[StoredObject]:
        """The objects of one kind (``uploads``): their keys, sizes and times."""
        base = self._key(f"{kind.strip('/')}/x")[:-1]
        cut = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base
            )
            for page in pages:
                for o in page.get("Contents", []):
                    yield StoredObject(o["Key"][cut:], o["Size"], o["LastModified"].timestamp())
        except ObjectStoreUnavailable:
            raise
        except Exception as exc:
            raise self._fail("listing", kind, exc) from None

    def clean_partial(self, kind: str, older_than_s: float) -> int:
        """Abort the multipart uploads of one kind that never completed (an
        API killed while a request streamed in) started over ``older_than_s`` ago."""
        base = self._key(f"{kind.strip('/')}/x")[:-1]
        cutoff, removed = time.time() - older_than_s, 0
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=base
            )
            for page in pages:
                for up in page.get("Uploads", []):
                    if up["Initiated"].timestamp() < cutoff:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        removed += 1
        except Exception as exc:
            raise self._fail("cleaning", kind, exc) from None
        return removed

    def check(self) -> None:
        """Write and delete a probe object: the bucket exists and the
        credentials may write to it."""
        probe = f"{self.prefix}/.readyz" if self.prefix else ".readyz"
        try:
            self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self._client.delete_object(Bucket=self.bucket, Key=probe)
        except Exception as exc:
            raise ObjectStoreUnavailable(
                f"object store bucket {self.bucket!r} is not usable "
                f"({type(exc).__name__}): check DSA_STORAGE_URL, DSA_S3_ENDPOINT_URL "
                "and the AWS credentials"
            ) from None
