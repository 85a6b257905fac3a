"""The node's cache of a remote store (``core.cache``, decision 0022),
against a real S3-protocol server (moto in server mode, the fixture of
``test_storage_backends``): what it keeps, what it never keeps, a damaged
entry, its budget, and its directory deleted under it."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.cache import BLOCK, NodeCache
from core.errors import ObjectNotFound
from core.s3 import S3Store
from core.storage import store_from_url
from tests.core.test_storage_backends import _bucket, s3_endpoint  # noqa: F401 - a fixture

CHUNK = "chunks/" + "ab" * 32


def _stores(endpoint: str, cache_dir: Path, budget: int = 64 * BLOCK) -> tuple[S3Store, S3Store]:
    """The same bucket through a cache and without one (to change it behind the cache's back)."""
    url = f"s3://{_bucket(endpoint)}/p"
    cached = store_from_url(url, s3_endpoint_url=endpoint, cache_dir=cache_dir, cache_bytes=budget)
    plain = store_from_url(url, s3_endpoint_url=endpoint)
    assert isinstance(cached, S3Store) and isinstance(plain, S3Store)
    assert cached.cache is not None and plain.cache is None
    return cached, plain


def _parquet(rows: int = 400_000) -> bytes:
    table = pa.table({"a": list(range(rows)), "b": [f"row {i}" for i in range(rows)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=20_000, compression="none")
    return buf.getvalue()


def _row_group(store: S3Store, key: str, i: int) -> list[int]:
    with store.open_arrow(key) as f:
        return pq.ParquetFile(f).read_row_group(i).column("a").to_pylist()


def test_immutable_objects_are_read_again_from_the_node(s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    cached, plain = _stores(s3_endpoint, tmp_path / "cache")
    data = _parquet()
    assert len(data) > 3 * BLOCK  # several blocks: a row group reads only its own
    plain.put(CHUNK, data)
    plain.put("manifests/" + "cd" * 32, b"a manifest")
    plain.put("uploads/" + "ef" * 16, b"an upload")

    assert _row_group(cached, CHUNK, 13) == list(range(260_000, 280_000))
    assert cached.get("manifests/" + "cd" * 32) == b"a manifest"
    assert cached.get("uploads/" + "ef" * 16) == b"an upload"
    held = sorted(p.name.split(".")[-1] for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert "size" in held and "all" in held and len(held) < len(data) // BLOCK + 2
    with cached.local_path(CHUNK) as path:  # a whole file, for polars: every block now
        assert path.read_bytes() == data

    # gone from the bucket: what the node read is still served, verified
    for key in (CHUNK, "manifests/" + "cd" * 32, "uploads/" + "ef" * 16):
        plain.delete(key)
    assert _row_group(cached, CHUNK, 13) == list(range(260_000, 280_000))
    assert cached.get("manifests/" + "cd" * 32) == b"a manifest"
    with cached.local_path(CHUNK) as path:  # a whole file for polars: from the node too
        assert path.read_bytes() == data
    with pytest.raises(ObjectNotFound):  # uploads change hands: never cached
        cached.get("uploads/" + "ef" * 16)
    assert not cached.exists(CHUNK)  # existence is always the bucket's answer


def test_a_damaged_entry_is_detected_and_fetched_again(s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    cached, plain = _stores(s3_endpoint, tmp_path / "cache")
    data = _parquet()
    plain.put(CHUNK, data)
    assert cached.get(CHUNK) == data and cached.cache is not None
    assert _row_group(cached, CHUNK, 3)
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    for i, path in enumerate(entries):  # flip a byte in some, cut the others short
        raw = bytearray(path.read_bytes())
        if i % 2:
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
        else:
            path.write_bytes(bytes(raw[: len(raw) // 2]))
    before = cached.cache.damaged
    assert cached.get(CHUNK) == data
    assert _row_group(cached, CHUNK, 3) == list(range(60_000, 80_000))
    assert cached.cache.damaged > before
    assert cached.get(CHUNK) == data  # the refetched entries are whole again
    assert cached.cache.damaged - before <= len(entries)


def test_the_cache_stays_within_its_budget(s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    budget = 4 * BLOCK
    cached, plain = _stores(s3_endpoint, tmp_path / "cache", budget)
    blob = b"x" * (BLOCK + 100)
    for i in range(12):
        key = f"chunks/{i:064x}"
        plain.put(key, blob)
        assert cached.get(key) == blob
    held = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert held <= budget + budget // 8 + 2 * BLOCK
    assert cached.get(f"chunks/{11:064x}") == blob  # the newest stayed
    assert NodeCache(tmp_path / "cache", budget).sweep() <= budget


def test_the_cache_may_be_deleted_at_any_time(s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    cached, plain = _stores(s3_endpoint, tmp_path / "cache")
    data = _parquet(100_000)
    plain.put(CHUNK, data)
    assert cached.get(CHUNK) == data
    shutil.rmtree(tmp_path / "cache")
    assert _row_group(cached, CHUNK, 2) == list(range(40_000, 60_000))
    assert cached.get(CHUNK) == data
    assert any((tmp_path / "cache").rglob("*.all"))


def test_no_cache_without_a_budget_or_for_a_local_store(tmp_path: Path) -> None:
    url = f"s3://bucket-{uuid.uuid4().hex[:8]}/p"
    off = store_from_url(url, cache_dir=tmp_path, cache_bytes=0)
    assert isinstance(off, S3Store) and off.cache is None
    local = store_from_url(tmp_path.as_uri(), cache_dir=tmp_path / "c", cache_bytes=BLOCK)
    assert not hasattr(local, "cache")
