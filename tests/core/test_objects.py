from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import ObjectNotFound
from core.objects import Manifest, Piece, get_manifest, put_object
from core.storage import LocalStore, store_from_url


@given(
    lengths=st.lists(st.integers(1, 50), max_size=20),
    offset=st.integers(0, 1100),
    limit=st.integers(0, 200),
)
def test_manifest_slices_match_brute_force(lengths: list[int], offset: int, limit: int) -> None:
    pieces = tuple(Piece(f"{i:064x}", i * 3, n) for i, n in enumerate(lengths))
    manifest = Manifest(pieces)
    flat = [(p.chunk, p.start + k) for p in pieces for k in range(p.length)]
    got = [(c, s + k) for c, s, n in manifest.slices(offset, limit) for k in range(n)]
    assert got == flat[offset : offset + limit]
    assert manifest.row_count == len(flat)


def test_local_store_fans_out_and_writes_atomically(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = "chunks/" + "ab" * 32
    store.put(key, b"hello")
    assert (tmp_path / "chunks" / "ab" / "ab" / ("ab" * 32)).read_bytes() == b"hello"
    assert store.get(key) == b"hello" and store.exists(key)
    assert not list(tmp_path.rglob("*.tmp"))
    store.delete(key)
    with pytest.raises(ObjectNotFound):
        store.get(key)
    with pytest.raises(ValueError):
        store.put("../escape", b"x")


def test_objects_round_trip_through_the_store(tmp_path: Path) -> None:
    store = store_from_url(tmp_path.as_uri())
    m = Manifest((Piece("c" * 64, 0, 5),))
    oid = put_object(store, "manifest", m)
    assert oid == m.id
    assert get_manifest(store, oid) == m


def test_a_large_manifest_is_stored_compressed_under_its_json_id(tmp_path: Path) -> None:
    from core import objects

    store = store_from_url(tmp_path.as_uri())
    m = Manifest(tuple(Piece(f"{i % 7:064x}", i * 3, 2) for i in range(5000)))
    oid = put_object(store, "manifest", m)
    assert oid == m.id
    raw = store.get(f"manifests/{oid}")
    assert raw.startswith(b"DSAM\x02") and len(raw) < objects.COMPRESS_OVER
    objects._cache.clear()
    assert get_manifest(store, oid) == m
    # chunk ids that are not hex: the compressed JSON instead
    odd = Manifest(tuple(Piece(f"chunk-{i % 7}" * 8, i, 1) for i in range(5000)))
    oid = put_object(store, "manifest", odd)
    assert store.get(f"manifests/{oid}")[:4] == b"\x28\xb5\x2f\xfd"
    objects._cache.clear()
    assert get_manifest(store, oid) == odd and oid == odd.id


def test_manifest_bytes_and_compact_form_match_the_reference(tmp_path: Path) -> None:
    import random

    from core import objects
    from core.hashing import canonical_json, json_object_id

    rnd = random.Random(5)
    ids = [f"{i:064x}" for i in range(9)]
    m = Manifest(
        tuple(
            Piece(rnd.choice(ids), rnd.randrange(10**6), rnd.randrange(1, 9)) for _ in range(9000)
        )
    )
    assert m.canonical == canonical_json(m.to_json())
    assert m.id == json_object_id("manifest", m.to_json())
    store = store_from_url(tmp_path.as_uri())
    oid = put_object(store, "manifest", m)
    objects._cache.clear()
    assert get_manifest(store, oid).pieces == m.pieces


@example([(i % 5 + 1, i, 3) for i in range(5000)])  # past the vectorised JSON size
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**6), st.integers(1, 9)), max_size=300)
)
def test_a_manifest_from_columns_is_the_manifest_of_its_pieces(
    runs: list[tuple[int, int, int]],
) -> None:
    import numpy as np

    ids = [f"{i:064x}" for i in (7, 3, 9, 1, 4, 8)]  # some never used, any order
    pieces = tuple(Piece(ids[c], s, n) for c, s, n in runs)
    cols = np.array(runs, dtype=np.int64).reshape(-1, 3).T
    lazy = Manifest.from_columns(ids, cols[0], cols[1], cols[2])
    plain = Manifest(pieces)
    assert tuple(lazy.pieces) == pieces
    assert lazy.canonical == plain.canonical and lazy.id == plain.id
    assert lazy.columns.chunks == plain.columns.chunks
    assert (lazy.columns.chunk == plain.columns.chunk).all()
    assert Manifest.of(lazy.pieces).id == plain.id


def _v1(m: Manifest) -> bytes:
    """The first compact form (``DSAM\\x01``): every column 8 bytes wide."""
    import numpy as np
    import zstandard

    c = m.columns
    gap, end = [], {}
    for x, s, n in zip(c.chunk.tolist(), c.start.tolist(), c.length.tolist(), strict=True):
        gap.append(s - end.get(x, 0))
        end[x] = s + n
    body = (
        len(c.chunks).to_bytes(8, "little")
        + b"".join(bytes.fromhex(x) for x in c.chunks)
        + len(gap).to_bytes(8, "little")
        + b"".join(np.asarray(a, "<i8").tobytes() for a in (c.chunk, gap, c.length))
    )
    return b"DSAM\x01" + zstandard.ZstdCompressor().compress(body)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2**40), st.integers(0, 2**33)),
        min_size=1,
        max_size=60,
    )
)
def test_compact_manifests_decode_in_both_forms(runs: list[tuple[int, int, int]]) -> None:
    """Pieces going back in their chunk (negative gaps) and columns of every
    width read back exactly, from the current form and from the first."""
    from core import objects

    m = Manifest(tuple(Piece(f"{c:064x}", s, n) for c, s, n in runs))
    new = objects._encode_manifest(m)
    assert new is not None and new.startswith(b"DSAM\x02")
    for raw in (new, _v1(m)):
        got = objects._decode_manifest(raw)
        assert tuple(got.pieces) == m.pieces
        assert got.columns.pos.tolist() == m.columns.pos.tolist()
        order = got.columns.by_chunk.tolist()
        assert order == objects.by_chunk(m.columns.chunk, len(m.columns.chunks)).tolist()


def test_a_damaged_compact_manifest_is_an_error_not_a_crash() -> None:
    import zstandard

    from core import objects

    m = Manifest(tuple(Piece(f"{i % 3:064x}", i, 2) for i in range(100)))
    raw = objects._encode_manifest(m)
    assert raw is not None
    body = bytearray(zstandard.ZstdDecompressor().decompress(raw[5:]))
    at = 8 + 32 * 3 + 8 + 3
    body[at] = 9  # chunk number 9 of 3
    with pytest.raises(ValueError, match="damaged manifest"):
        objects._decode_manifest(b"DSAM\x02" + zstandard.ZstdCompressor().compress(bytes(body)))
    with pytest.raises(ValueError, match="damaged manifest"):  # cut short
        short = zstandard.ZstdCompressor().compress(bytes(body[: at + 50]))
        objects._decode_manifest(b"DSAM\x02" + short)
    body[at] = 0
    z = zstandard.ZstdCompressor().compress
    bad = {
        "bytes left over": b"DSAM\x02" + z(bytes(body) + b"\0"),
        "an unknown form": b"DSAM\x07" + z(bytes(body)),
        # a count of chunk ids its bytes cannot hold: refused before any is made
        "2^40 chunks": b"DSAM\x02" + z((2**40).to_bytes(8, "little") + bytes(body[8:])),
    }
    widths = body[at - 3 : at]
    gap_at = at + 100 * widths[0]  # the first piece's gap: before its chunk's start
    neg = bytearray(body)
    neg[gap_at : gap_at + widths[1]] = (-5).to_bytes(widths[1], "little", signed=True)
    bad["a negative start"] = b"DSAM\x02" + z(bytes(neg))
    for what, raw in bad.items():
        with pytest.raises(ValueError, match="damaged manifest"):
            objects._decode_manifest(raw)
        assert what
