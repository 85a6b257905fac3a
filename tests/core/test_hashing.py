"""Golden vectors: these values are the spec (docs/hash-spec.md). They never
change; a new encoding gets a new version tag instead."""

from __future__ import annotations

import datetime as dt
import struct

import blake3
import pyarrow as pa
import pytest

from core.hashing import canonical_json, chunk_id, row_hashes
from core.objects import Commit, Manifest, Piece, Schema, TableEntry
from core.schema import Column, arrow_type

UTC = dt.UTC

GOLDEN = {
    "integer": (
        [0, 1, -1, 2**63 - 1, -(2**63), None],
        "c13e0415fadb1ca31b4a922d641c19e4 6c860a6aab387c601ce2484ada40b9a4 "
        "0403c4d58c81554d39f8588d04d5ea3c 3255780ba63d25be3e8523e36b7eca83 "
        "1db262b366c4bd1658ba1efa7682ed76 4a457f6baee683be89c6cfa7d466f855",
    ),
    "float": (
        [0.0, -0.0, float("nan"), float("inf"), 1.5, None],
        "cc101e89a6ce14482b58d6df8692b95e cc101e89a6ce14482b58d6df8692b95e "
        "a3c973a03401d56cb1ba525eb5faf788 8b91c0237eee9b26c934023cd5d3856e "
        "0c2cbc9de1627e5cdbbadc25c33d67f6 eeb84fd904a590acb852d326c0576c23",
    ),
    "boolean": (
        [True, False, None],
        "0ce43df909f2cfcabba785def49222cf 3c077497a4c4ba5b7db41faa4cc76603 "
        "4e5e2d779fd2e6013f0dea7b1afe743c",
    ),
    "string": (
        ["", None, "héllo", "日本語", 'a,b\n"c"', "😀"],
        "ac887957550843c5568f2bcf38b06d6e 3bf1055daea4e9c113cc5880613b502b "
        "c2c7f70e817c25ad370a5db85885bd6d 51b6cb24b844f0b7635106bd670e1b26 "
        "8f2aab30ee8d169acd80369ea639d6d4 7a2686ab8e1e20854f9abe4b7cec7811",
    ),
    "date": (
        [dt.date(1970, 1, 1), dt.date(1969, 12, 31), dt.date(2024, 2, 29), None],
        "507c928c29debd30b5e9841c74064919 143cf669d7f6aa9a8eabf873cc627c95 "
        "fc6e226562474c1bf21bd381bd947078 c6630b3910f16d3545cd2088af40c4a0",
    ),
    "datetime": (
        [dt.datetime(1970, 1, 1), dt.datetime(2024, 5, 6, 7, 8, 9, 123456), None],
        "fc15eb24ced65c0b6e7a644fc232cf4c 0ea0322b5b041c51b7b1a5f1fbc936b1 "
        "b13fe04d34535ada39276196506b37cd",
    ),
    "datetime_tz": (
        [dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), None],
        "06bb5c249f7c9282c853f52817ce08e6 b2ca1ad85208d870d08c7949c0ea4352",
    ),
    "binary": (
        [b"", b"\x00\xff", None],
        "2ac40747c6fbb2452dad6fc46a676e6b c5bbd46158f59218e03de123deb6d333 "
        "5942ebc14111aac7c96bef24e745f628",
    ),
}


def _hashes(values: list[object], logical: str, name: str = "v") -> list[str]:
    table = pa.table({name: pa.array(values, arrow_type(logical))})
    h = row_hashes(table, [Column(name, logical)])
    return [h[i * 16 : (i + 1) * 16].hex() for i in range(len(values))]


@pytest.mark.parametrize("logical", sorted(GOLDEN))
def test_golden_row_hashes(logical: str) -> None:
    values, expected = GOLDEN[logical]
    assert _hashes(values, logical) == expected.split()


def test_null_empty_and_negative_zero_rules() -> None:
    s = _hashes(["", None], "string")
    assert s[0] != s[1]
    f = _hashes([0.0, -0.0, float("nan"), -float("nan")], "float")
    assert f[0] == f[1] and f[2] == f[3]
    # the same null in columns of different types or names hashes differently
    assert _hashes([None], "integer") != _hashes([None], "float")
    assert _hashes([1], "integer", "a") != _hashes([1], "integer", "b")


def test_row_hash_matches_the_spec_by_hand() -> None:
    """One row built byte by byte from docs/hash-spec.md."""
    enc = b"dsa.row.v1\0" + struct.pack("<I", 2)
    enc += struct.pack("<I", 2) + b"id" + b"i" + b"\x01" + struct.pack("<q", 42)
    enc += struct.pack("<I", 4) + b"name" + b"s" + b"\x01" + struct.pack("<Q", 3) + b"ann"
    table = pa.table({"id": pa.array([42], pa.int64()), "name": pa.array(["ann"])})
    got = row_hashes(table, [Column("id", "integer"), Column("name", "string")])
    assert got == blake3.blake3(enc).digest(length=16)


def test_timestamps_hash_as_utc_microseconds() -> None:
    naive = _hashes([dt.datetime(2024, 1, 1, 12)], "datetime_tz")
    zoned = dt.datetime(2024, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert _hashes([zoned], "datetime_tz") == naive


def test_golden_object_ids() -> None:
    schema = Schema((Column("id", "integer", False), Column("name", "string", True)))
    manifest = Manifest((Piece("a" * 64, 0, 10), Piece("b" * 64, 5, 3)))
    commit = Commit(
        parents=("c" * 64,),
        tables={"t": TableEntry(schema.id, manifest.id, 13)},
        author="ann",
        created_at="2024-01-02T03:04:05.000006Z",
        message="hé",
        provenance={"k": [1, "x"]},
    )
    assert schema.id == "d28b56af1d96aaa50b074259751fe73736d1a9816d008da8f1e09b526eaa0357"
    assert manifest.id == "99314027c75d080cdf7d17845a3aef1672ded20027fcd04c2933f99e7170c49b"
    assert commit.id == "96de05b8209c5f0edf5ac2dff4481a4eea919792b20697e4400999a470fc59f7"
    assert (
        chunk_id(bytes(range(32)))
        == "3343d106bee05a75deaa6bd46844e5de80a7f8c58518e9e7db9958ab7d70b698"
    )
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
