"""The object store protocol, against both backends: a directory
(``file://``) and an S3-protocol server (``s3://``, moto in server mode on
127.0.0.1, started here: a real HTTP server speaking S3, no in-process
mocking of the client). Issue 13, decision 0020."""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import ObjectNotFound, Unavailable
from core.storage import ObjectStore, store_from_url

SECRET = "not-a-real-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="dsa-test", AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1"
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _bucket(endpoint: str) -> str:
    import urllib.request

    name = f"dsa-{uuid.uuid4().hex[:12]}"
    req = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    return name


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return store_from_url((tmp_path / "objects").as_uri())
    endpoint = request.getfixturevalue("s3_endpoint")
    return store_from_url(f"s3://{_bucket(endpoint)}/some/prefix", s3_endpoint_url=endpoint)


def test_objects_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    store.put("manifests/" + "ab" * 32, b"hello")
    assert store.get("manifests/" + "ab" * 32) == b"hello"
    assert store.exists("manifests/" + "ab" * 32)
    src = tmp_path / "upload.bin"
    src.write_bytes(b"x" * 3_000_000)
    store.put_file("uploads/" + "cd" * 16, src, move=True)
    assert not src.exists()  # moved
    with store.open("uploads/" + "cd" * 16) as f:
        assert f.read(3) == b"xxx"
    with store.local_path("uploads/" + "cd" * 16) as path:
        assert path.stat().st_size == 3_000_000
    store.delete("uploads/" + "cd" * 16)
    store.delete("uploads/" + "cd" * 16)  # already gone: fine
    assert not store.exists("uploads/" + "cd" * 16)


def test_parquet_is_read_by_ranges(store: ObjectStore) -> None:
    """Arrow reads a footer and one row group without the whole object."""
    table = pa.table({"a": list(range(100_000)), "b": [str(i) for i in range(100_000)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=10_000)
    store.put("chunks/" + "ef" * 32, buf.getvalue())
    with store.open_arrow("chunks/" + "ef" * 32) as f:
        pf = pq.ParquetFile(f)
        assert pf.metadata.num_row_groups == 10
        assert pf.read_row_group(7).column("a")[0].as_py() == 70_000


def test_a_missing_object_is_not_found(store: ObjectStore) -> None:
    key = "chunks/" + "00" * 32
    assert not store.exists(key)
    for read in (store.get, store.open, store.open_arrow):
        with pytest.raises(ObjectNotFound):
            read(key)
    with pytest.raises(ObjectNotFound), store.local_path(key):
        pass


@pytest.mark.parametrize("key", ["", "chunks", "/chunks/x", "chunks/../../etc", "../x/y"])
def test_keys_outside_the_store_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.get(key)


def test_a_usable_store_passes_its_check(store: ObjectStore) -> None:
    store.check()


def test_a_bucket_that_does_not_exist_is_unavailable_and_says_which(s3_endpoint: str) -> None:
    store = store_from_url("s3://no-such-bucket-here/p", s3_endpoint_url=s3_endpoint)
    with pytest.raises(Unavailable) as exc:
        store.check()
    assert "no-such-bucket-here" in exc.value.detail and "DSA_STORAGE_URL" in exc.value.detail
    with pytest.raises((Unavailable, ObjectNotFound)) as read:  # S3 says 404 for both
        store.get("chunks/" + "11" * 32)
    for err in (exc.value, read.value):
        assert SECRET not in str(err.to_problem()) and "dsa-test" not in str(err.to_problem())


def test_an_s3_url_needs_a_bucket() -> None:
    with pytest.raises(ValueError):
        store_from_url("s3:///prefix")


def test_a_forked_child_reads_the_store_its_parent_used(store: ObjectStore, tmp_path: Path) -> None:
    """Imports run in a forked child (core/isolation.py) of a process that
    has used the store: the child's reads must work (obstore's did not:
    decision 0020)."""
    from core.isolation import run_isolated

    key = "manifests/" + "12" * 32
    store.put(key, b"parent wrote this")
    assert store.get(key) == b"parent wrote this"  # the parent's client is in use
    out = tmp_path / "child.txt"

    def child() -> None:
        out.write_bytes(store.get(key))
        store.put("manifests/" + "34" * 32, b"child wrote this")

    assert run_isolated(child, memory_bytes=0, cpu_s=20) == 0
    assert out.read_bytes() == b"parent wrote this"
    assert store.get("manifests/" + "34" * 32) == b"child wrote this"


@pytest.mark.parametrize("size", [10, 40 * 1024**2])  # one PUT; parts (16 MiB) then complete
def test_a_streamed_object_appears_whole_on_commit_and_never_on_abort(
    store: ObjectStore, size: int
) -> None:
    data = os.urandom(size)
    writer = store.open_writer("uploads/" + "56" * 16)
    for i in range(0, size, 3_000_000):
        writer.write(data[i : i + 3_000_000])
    assert not store.exists("uploads/" + "56" * 16)  # nothing visible before commit
    writer.commit()
    assert store.get("uploads/" + "56" * 16) == data
    aborted = store.open_writer("uploads/" + "78" * 16)
    aborted.write(data)
    aborted.abort()
    assert not store.exists("uploads/" + "78" * 16)


def test_objects_are_listed_and_unfinished_writes_cleaned(store: ObjectStore) -> None:
    """Housekeeping's view of a kind: stored uploads with their sizes and
    times, and writes that never completed (an API killed while a request
    streamed in) removed once old enough, leaving whole objects alone."""
    store.put("uploads/" + "9a" * 16, b"whole")
    store.put("chunks/" + "9b" * 32, b"another kind")
    listed = list(store.list("uploads"))
    assert [(o.key, o.size) for o in listed] == [("uploads/" + "9a" * 16, 5)]
    assert abs(listed[0].modified - time.time()) < 120
    unfinished = store.open_writer("uploads/" + "9c" * 16)
    unfinished.write(os.urandom(17 * 1024**2))  # a part sent (S3), a temp file (local)
    if not store.remote:  # moto reports every multipart upload as started in 2010
        assert store.clean_partial("uploads", older_than_s=3600) == 0  # too young
    assert store.clean_partial("uploads", older_than_s=-1) == 1
    assert [o.key for o in store.list("uploads")] == ["uploads/" + "9a" * 16]
    with contextlib.suppress(Exception):
        unfinished.abort()


def test_nested_keys_list_as_written_and_a_touch_keeps_the_bytes(store: ObjectStore) -> None:
    """What gc relies on: listed keys are the keys written (fanned-out and
    nested ones alike), stat tells size and time, and a writer that finds an
    old copy of its object renews its time without rewriting its bytes
    (needs_write), so a cache holding those bytes stays right."""
    from core.storage import REFRESH_AFTER_S, needs_write

    nested = "layouts/" + "7a" * 32 + "-0123456789abcdef/000003"
    flat = "chunks/" + "7b" * 32
    for key in (nested, flat):
        store.put(key, b"bytes of " + key.encode())
    assert nested in {o.key for o in store.list("layouts")}
    assert flat in {o.key for o in store.list("chunks")}
    st = store.stat(flat)
    assert st is not None and st.size == len(b"bytes of " + flat.encode())
    assert store.stat("chunks/" + "7c" * 32) is None
    if not store.remote:  # a file's time can be set back; an S3 object's cannot
        old = time.time() - 2 * REFRESH_AFTER_S
        os.utime(store._path(flat), (old, old))  # type: ignore[attr-defined]  # noqa: SLF001
    else:
        store.touch(flat)
    assert needs_write(store, flat) is False and needs_write(store, "chunks/" + "7d" * 32)
    again = store.stat(flat)
    assert again is not None and abs(again.modified - time.time()) < 120
    assert store.get(flat) == b"bytes of " + flat.encode()


def test_compressed_keys_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    """Uploads on a remote store are kept zstd-compressed (``….zst`` keys):
    written compressed, streamed or moved in, fetched back as they came."""
    from core.storage import COMPRESSED, fetched, put_local, writer

    data = b"id,name\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(200_000))
    key = "uploads/" + "5e" * 16 + COMPRESSED
    w = writer(store, key)
    for i in range(0, len(data), 100_000):
        w.write(data[i : i + 100_000])
    w.commit()
    assert len(store.get(key)) < len(data) // 3  # stored compressed
    with fetched(store, key, max_bytes=len(data), work=tmp_path / "w") as path:
        assert path.read_bytes() == data
    assert not list((tmp_path / "w").iterdir())  # the decompressed copy goes afterwards
    with pytest.raises(ValueError), fetched(store, key, max_bytes=1000, work=tmp_path / "w"):
        pass  # more than the upload's size: refused, not written out
    src = tmp_path / "moved.csv"
    src.write_bytes(data)
    put_local(store, "uploads/" + "5f" * 16 + COMPRESSED, src)
    assert not src.exists()
    plain = tmp_path / "plain.csv"
    plain.write_bytes(data)
    put_local(store, "uploads/" + "60" * 16, plain)
    for k in ("uploads/" + "5f" * 16 + COMPRESSED, "uploads/" + "60" * 16):
        with fetched(store, k, max_bytes=len(data), work=tmp_path / "w") as path:
            assert path.read_bytes() == data


def test_presigned_urls_name_the_endpoint_clients_reach(s3_endpoint: str) -> None:
    """Servers may reach the bucket by an inside name (Compose's minio:9000);
    ``DSA_S3_PUBLIC_ENDPOINT_URL`` signs export redirects for the outside one."""
    url = f"s3://{_bucket(s3_endpoint)}/p"
    inside = store_from_url(url, s3_endpoint_url=s3_endpoint)
    outside = store_from_url(
        url, s3_endpoint_url=s3_endpoint, s3_public_endpoint_url="http://files.example.org:9000"
    )
    args = {"seconds": 60, "filename": "t.parquet", "media_type": "application/vnd.apache.parquet"}
    assert str(inside.presign("exports/" + "ab" * 32, **args)).startswith(s3_endpoint)
    signed = outside.presign("exports/" + "ab" * 32, **args)
    assert signed is not None and signed.startswith("http://files.example.org:9000/")
    assert SECRET not in signed
    assert store_from_url("file:///tmp/x").presign("exports/x", **args) is None
