"""A table's content digest (docs/hash-spec.md, "Table digest"): BLAKE3 over
its row hashes in table order, in the form of a chunk id, so the same rows
in the same order give the same digest however they are stored (one chunk,
thousands of pieces, a read copy). Lock files pin it; ``dsa pull`` checks a
download against it.

Computed from the manifest the first time it is asked for (a scan of the
``_row_hash`` column alone: ~16 bytes a row), under the request's deadline,
then remembered by manifest id in ``table_digest`` (a cache).
"""

from __future__ import annotations

from typing import Any

from core import db, deadline
from core.layouts import rows_digest
from core.lru import LRU
from core.objects import Manifest
from core.storage import ObjectStore

Q = db.Queries(__file__)
PREFIX = "blake3:"
_known: LRU[str, str] = LRU(max_items=4096)


def known(conn: Any, manifest_ids: list[str]) -> dict[str, str]:
    """The digests computed before among ``manifest_ids`` (no scan; one
    query for those not remembered in this process)."""
    out = {m: hit for m in manifest_ids if (hit := _known.get(m)) is not None}
    missing = [m for m in manifest_ids if m not in out]
    if missing:
        for row in conn.execute(Q.get_digests, {"manifest_ids": missing}):
            out[row["manifest_id"]] = str(row["digest"])
            _known.put(row["manifest_id"], str(row["digest"]))
    return out


def digest(conn: Any, store: ObjectStore, manifest: Manifest) -> str:
    """The table's digest: remembered, or computed now and remembered."""
    hit = known(conn, [manifest.id]).get(manifest.id)
    if hit is not None:
        return hit
    deadline.check()
    value = PREFIX + rows_digest(store, manifest)
    with db.transaction() as w:
        w.execute(
            Q.put_digest,
            {"manifest_id": manifest.id, "digest": value, "row_count": manifest.row_count},
        )
    _known.put(manifest.id, value)
    return value
