"""Cell-level merge of rows both sides modified: each cell takes the side
that changed it; a cell both changed differently is a conflict (settled by
``strategy`` ours/theirs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.objects import Schema
from features.compare import service as compare_service


def column_type(schema: Schema, name: str) -> str:
    return next(c.type for c in schema.columns if c.name == name)


def merge_cells(
    bv: compare_service.TableVersion,
    ov: compare_service.TableVersion,
    tv: compare_service.TableVersion,
    xb: np.ndarray,
    xo: np.ndarray,
    xt: np.ndarray,
    strategy: str,
    table: str,
    key: list[str] | None,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Rows both sides modified: each cell from the side that changed it."""
    names = ov.schema.names
    rb, ro, rt = bv.rows.read(xb, names), ov.rows.read(xo, names), tv.rows.read(xt, names)
    out = []
    clash_any = np.zeros(len(xb), dtype=bool)
    clashes: dict[str, np.ndarray] = {}
    for n in names:
        b, o, t = rb.column(n), ro.column(n), rt.column(n)
        o_same = _equal(o, b)
        t_same = _equal(t, b)
        ot_same = _equal(o, t)
        clash = ~o_same & ~t_same & ~ot_same
        take_t = o_same | (clash & (strategy == "theirs"))
        out.append(pc.if_else(pa.array(take_t), t, o))
        clashes[n] = clash
        clash_any |= clash
    conflicts = []
    if clash_any.any():
        vals = {
            side: {n: r.column(n).to_pylist() for n in names}
            for side, r in (("base", rb), ("ours", ro), ("theirs", rt))
        }
        for i in np.flatnonzero(clash_any).tolist():
            c: dict[str, Any] = {
                "table": table,
                "kind": "modify/modify",
                "base_position": int(xb[i]),
                "ours_position": int(xo[i]),
                "theirs_position": int(xt[i]),
                "cells": {
                    n: {s: _jsonable(vals[s][n][i]) for s in ("base", "ours", "theirs")}
                    for n in names
                    if clashes[n][i]
                },
            }
            if key:
                c["key"] = {k: _jsonable(vals["ours"][k][i]) for k in key}
            conflicts.append(c)
    return pa.table(out, names=names), conflicts


def _jsonable(v: Any) -> Any:
    """A cell for a conflict report (problem documents go through plain JSON)."""
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _equal(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    eq = pc.fill_null(pc.equal(a, b), False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return np.asarray(pc.or_(eq, both_null).to_numpy(zero_copy_only=False), dtype=bool)
