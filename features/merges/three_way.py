"""The three-way merge of tables: what merges and reverts build before they
land (features/merges/service.py says how a merge decides; this module does
the row work). Pure of the database: it reads objects and writes chunks,
schemas and manifests, never a ref.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from core.chunks import write_chunk
from core.objects import Commit, Manifest, Piece, Schema, TableEntry, put_object
from core.schema import Column
from core.storage import ObjectStore
from features.compare import service as compare_service
from features.merges.cells import column_type, merge_cells

MAX_CONFLICTS_SHOWN = 100
KEPT, REMOVED, MODIFIED = 0, 1, 2


@dataclass
class Changes:
    """How one side changed the base's rows (from a compare of base and side)."""

    td: compare_service.TableDiff
    side_rows: int

    def __post_init__(self) -> None:
        td = self.td
        by_b = np.argsort(td.seg[:, 0], kind="stable") if len(td.seg) else np.empty(0, np.int64)
        self.seg_b = td.seg[by_b]  # segments in base order
        self.seg_h = td.seg  # in side order
        self.removed = np.sort(td.base_pos[td.op == compare_service.REMOVE])
        mod = td.op == compare_service.MODIFY
        order = np.argsort(td.base_pos[mod], kind="stable")
        self.mod_b = td.base_pos[mod][order]
        self.mod_h = td.head_pos[mod][order]
        self.mod_h_sorted = np.sort(td.head_pos[mod])
        self.mod_b_by_h = td.base_pos[mod][np.argsort(td.head_pos[mod], kind="stable")]
        self.added = np.sort(td.head_pos[td.op == compare_service.ADD])

    def status(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For base rows ``xs``: KEPT/REMOVED/MODIFIED and the side's position (-1)."""
        kind = np.full(len(xs), REMOVED, np.int64)
        pos = np.full(len(xs), -1, np.int64)
        if len(self.seg_b):
            i = np.searchsorted(self.seg_b[:, 0], xs, side="right") - 1
            ok = i >= 0
            ic = np.where(ok, i, 0)
            inside = ok & (xs < self.seg_b[ic, 0] + self.seg_b[ic, 2])
            kind[inside] = KEPT
            pos[inside] = (self.seg_b[ic, 1] + xs - self.seg_b[ic, 0])[inside]
        if len(self.mod_b):
            j = np.searchsorted(self.mod_b, xs)
            jc = np.minimum(j, len(self.mod_b) - 1)
            hit = self.mod_b[jc] == xs
            kind[hit] = MODIFIED
            pos[hit] = self.mod_h[jc][hit]
        return kind, pos

    def anchor(self, ts: np.ndarray) -> np.ndarray:
        """For side rows ``ts`` (added ones): the base row linked to the nearest
        side row before each (matched or modified), -1 when none."""
        out = np.full(len(ts), -1, np.int64)
        best = np.full(len(ts), -1, np.int64)
        if len(self.seg_h):
            i = np.searchsorted(self.seg_h[:, 1], ts, side="right") - 1
            ok = i >= 0
            ic = np.where(ok, i, 0)
            last = np.minimum(ts - 1, self.seg_h[ic, 1] + self.seg_h[ic, 2] - 1)
            best = np.where(ok, last, -1)
            out = np.where(ok, self.seg_h[ic, 0] + last - self.seg_h[ic, 1], -1)
        if len(self.mod_h_sorted):
            j = np.searchsorted(self.mod_h_sorted, ts, side="left") - 1
            ok = j >= 0
            jc = np.where(ok, j, 0)
            later = ok & (self.mod_h_sorted[jc] > best)
            out = np.where(later, self.mod_b_by_h[jc], out)
        return out

    def next_linked(self, ps: np.ndarray) -> np.ndarray:
        """For side positions ``ps`` (-1 = before the first row): the first
        later position linked to a base row, or the row count."""
        out = np.full(len(ps), self.side_rows, np.int64)
        if len(self.seg_h):
            i = np.searchsorted(self.seg_h[:, 1], ps, side="right") - 1
            ic = np.where(i >= 0, i, 0)
            within = (i >= 0) & (ps + 1 < self.seg_h[ic, 1] + self.seg_h[ic, 2])
            nxt = i + 1
            has_next = nxt < len(self.seg_h)
            cand = np.where(has_next, self.seg_h[np.minimum(nxt, len(self.seg_h) - 1), 1], out)
            out = np.where(within, ps + 1, np.minimum(out, cand))
        if len(self.mod_h_sorted):
            j = np.searchsorted(self.mod_h_sorted, ps, side="right")
            has = j < len(self.mod_h_sorted)
            cand = self.mod_h_sorted[np.minimum(j, len(self.mod_h_sorted) - 1)]
            out = np.where(has, np.minimum(out, cand), out)
        return out


@dataclass
class TableMerge:
    entry: TableEntry | None
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    conflict_count: int = 0


def _table_conflict(name: str, kind: str, detail: str) -> dict[str, Any]:
    return {"table": name, "kind": kind, "detail": detail}


def merge_table(
    store: ObjectStore,
    name: str,
    base: Commit,
    ours: Commit,
    theirs: Commit,
    primary_key: list[str] | None,
    strategy: str,
) -> TableMerge:
    b, o, t = base.tables.get(name), ours.tables.get(name), theirs.tables.get(name)
    if o == t or t == b:
        return TableMerge(o)
    if o == b:
        return TableMerge(t)
    pick = {"ours": o, "theirs": t}.get(strategy)
    if o is None or t is None:
        who = "ours" if o is None else "theirs"
        c = _table_conflict(name, "table", f"{who} deleted the table, the other side changed it")
        return TableMerge(pick, [c], 1)
    bv = compare_service.version(store, base, name)
    ov = compare_service.version(store, ours, name)
    tv = compare_service.version(store, theirs, name)
    if b is None:  # added on both sides: merge as if from an empty table of their columns
        bv = compare_service.TableVersion(None, ov.schema, Manifest(()), bv.rows)
    same = compare_service.same_columns
    if not (same(bv.schema, ov.schema) and same(bv.schema, tv.schema)):
        c = _table_conflict(
            name,
            "schema",
            "the columns changed on a side while the other changed the table too; "
            "merge with strategy ours or theirs, or make the columns agree first",
        )
        return TableMerge(pick, [c], 1)
    return _merge_rows(store, name, bv, ov, tv, primary_key, strategy)


@dataclass
class _Plan:
    """What replaying theirs' changes onto ours does to ours' rows."""

    name: str
    strategy: str
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[np.ndarray] = field(default_factory=list)
    replace_o: list[np.ndarray] = field(default_factory=list)  # ours positions replaced by
    replace_t: list[np.ndarray] = field(default_factory=list)  # these theirs rows
    inserts_q: list[np.ndarray] = field(default_factory=list)  # insert theirs rows before
    inserts_t: list[np.ndarray] = field(default_factory=list)  # ours position q
    new_rows: pa.Table | None = None  # cell-merged rows, written anew at ours' new_at
    new_at: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def conflict(self, kind: str, **where: int) -> None:
        self.conflicts.append({"table": self.name, "kind": kind, **where})


def _merge_rows(
    store: ObjectStore,
    name: str,
    bv: compare_service.TableVersion,
    ov: compare_service.TableVersion,
    tv: compare_service.TableVersion,
    primary_key: list[str] | None,
    strategy: str,
) -> TableMerge:
    ours = Changes(compare_service.diff_table(bv, ov, primary_key), ov.manifest.row_count)
    theirs = Changes(compare_service.diff_table(bv, tv, primary_key), tv.manifest.row_count)
    plan = _Plan(name, strategy)
    _replay_removed(plan, ours, theirs)
    gone = _replay_modified(plan, ours, theirs, bv, ov, tv)
    _replay_added(plan, ours, theirs, ov, tv, gone)
    count = len(plan.conflicts)
    if count and strategy == "fail":
        return TableMerge(None, plan.conflicts[:MAX_CONFLICTS_SHOWN], count)
    manifest = _assemble(
        store,
        ov,
        tv,
        deletes=np.concatenate(plan.deletes),
        replace_o=np.concatenate(plan.replace_o),
        replace_t=np.concatenate(plan.replace_t),
        inserts_q=np.concatenate(plan.inserts_q),
        inserts_t=np.concatenate(plan.inserts_t),
        new_rows=plan.new_rows,
        new_at=plan.new_at,
    )
    schema = Schema(
        tuple(
            Column(c.name, c.type, c.nullable or d.nullable)
            for c, d in zip(ov.schema.columns, tv.schema.columns, strict=True)
        )
    )
    put_object(store, "schema", schema)
    put_object(store, "manifest", manifest)
    entry = TableEntry(schema.id, manifest.id, manifest.row_count)
    return TableMerge(entry, plan.conflicts[:MAX_CONFLICTS_SHOWN], count)


def _replay_removed(plan: _Plan, ours: Changes, theirs: Changes) -> None:
    """Rows theirs removed go from ours, unless ours modified them (a conflict)."""
    kind, opos = ours.status(theirs.removed)
    plan.deletes.append(opos[kind == KEPT])
    both = kind == MODIFIED
    for x, o in zip(theirs.removed[both].tolist(), opos[both].tolist(), strict=True):
        plan.conflict("modify/delete", base_position=x, ours_position=o)
    if plan.strategy == "theirs":
        plan.deletes.append(opos[both])


def _replay_modified(
    plan: _Plan,
    ours: Changes,
    theirs: Changes,
    bv: compare_service.TableVersion,
    ov: compare_service.TableVersion,
    tv: compare_service.TableVersion,
) -> np.ndarray:
    """Rows theirs modified replace ours' where ours kept them; where ours
    modified them too, their cells merge. Returns which of theirs'
    modifications hit rows ours removed (conflicts)."""
    kind, opos = ours.status(theirs.mod_b)
    kept = kind == KEPT
    plan.replace_o.append(opos[kept])
    plan.replace_t.append(theirs.mod_h[kept])
    gone = kind == REMOVED
    for x, t in zip(theirs.mod_b[gone].tolist(), theirs.mod_h[gone].tolist(), strict=True):
        plan.conflict("delete/modify", base_position=x, theirs_position=t)
    both = kind == MODIFIED
    if both.any():
        xb, xo, xt = theirs.mod_b[both], opos[both], theirs.mod_h[both]
        same_row = (ov.rows.stored_hashes(xo) == tv.rows.stored_hashes(xt)).all(axis=1)
        xb, xo, xt = xb[~same_row], xo[~same_row], xt[~same_row]
        if len(xb):
            plan.new_rows, cell_conflicts = merge_cells(
                bv, ov, tv, xb, xo, xt, plan.strategy, plan.name, ours.td.key
            )
            plan.conflicts.extend(cell_conflicts)
            plan.new_at = xo
    return gone


def _replay_added(
    plan: _Plan,
    ours: Changes,
    theirs: Changes,
    ov: compare_service.TableVersion,
    tv: compare_service.TableVersion,
    gone: np.ndarray,
) -> None:
    """Rows theirs added go in after the row they followed; the same row
    added by both sides at one place is kept once."""
    t_add = theirs.added
    q = _insertion_points(ours, theirs.anchor(t_add))
    if len(t_add):
        t_add, q, dup = _drop_repeated_adds(ours, theirs, ov, tv, t_add, q, ours.td.key)
        for t, o in dup:
            plan.conflict("add/add", ours_position=o, theirs_position=t)
        if plan.strategy == "theirs" and dup:
            plan.replace_o.append(np.array([o for _, o in dup], np.int64))
            plan.replace_t.append(np.array([t for t, _ in dup], np.int64))
    plan.inserts_q.append(q)
    plan.inserts_t.append(t_add)
    if plan.strategy == "theirs":  # deleted by ours, modified by theirs: theirs comes back
        gone_t = theirs.mod_h[gone]
        plan.inserts_q.append(_insertion_points(ours, theirs.anchor(gone_t)))
        plan.inserts_t.append(gone_t)


def _insertion_points(ours: Changes, anchors: np.ndarray) -> np.ndarray:
    """Where in ours rows anchored after base rows ``anchors`` go: before the
    first row linked to the base after the anchor's row in ours (so after
    rows ours added there). An anchor ours removed falls back to the nearest
    earlier base row ours still has."""
    kind, opos = ours.status(anchors)
    missing = (anchors >= 0) & (kind == REMOVED)
    for i in np.flatnonzero(missing):  # rare: walk back over rows ours removed
        x = int(anchors[i]) - 1
        while x >= 0:
            k, p = ours.status(np.array([x], np.int64))
            if k[0] != REMOVED:
                opos[i] = p[0]
                break
            x -= 1
        else:
            opos[i] = -1
    opos[anchors < 0] = -1
    return ours.next_linked(opos)


def _drop_repeated_adds(
    ours: Changes,
    theirs: Changes,
    ov: compare_service.TableVersion,
    tv: compare_service.TableVersion,
    t_add: np.ndarray,
    q: np.ndarray,
    key: list[str] | None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Rows both sides added: identical ones (same place, or same key) are
    kept once; the same key with other values is returned as a conflict."""
    o_add = ours.added
    if len(o_add) == 0:
        return t_add, q, []
    t_hash = tv.rows.stored_hashes(t_add)
    o_hash = ov.rows.stored_hashes(o_add)
    if key is not None:
        cols = [compare_service.Projected(k, k, column_type(ov.schema, k)) for k in key]
        o_keys = ov.rows.projected_hashes(o_add, cols)
        o_key = {bytes(h): int(p) for h, p in zip(o_keys, o_add, strict=True)}
        o_row = {int(p): bytes(h) for h, p in zip(o_hash, o_add, strict=True)}
        t_keys = tv.rows.projected_hashes(t_add, cols)
        keep, dup = [], []
        for i, (kh, rh) in enumerate(zip(t_keys, t_hash, strict=True)):
            o = o_key.get(bytes(kh))
            if o is None:
                keep.append(i)
            elif o_row[o] != bytes(rh):  # same key, other values
                dup.append((int(t_add[i]), o))
        idx = np.array(keep, np.int64)
        return t_add[idx], q[idx], dup
    o_q = ours.next_linked(o_add)
    have: dict[tuple[int, bytes], int] = {}
    for qq, h in zip(o_q.tolist(), o_hash, strict=True):
        have[(qq, bytes(h))] = have.get((qq, bytes(h)), 0) + 1
    keep = []
    for i, (qq, h) in enumerate(zip(q.tolist(), t_hash, strict=True)):
        k = (qq, bytes(h))
        if have.get(k):
            have[k] -= 1
        else:
            keep.append(i)
    idx = np.array(keep, np.int64)
    return t_add[idx], q[idx], []


def _assemble(
    store: ObjectStore,
    ov: compare_service.TableVersion,
    tv: compare_service.TableVersion,
    *,
    deletes: np.ndarray,
    replace_o: np.ndarray,
    replace_t: np.ndarray,
    inserts_q: np.ndarray,
    inserts_t: np.ndarray,
    new_rows: pa.Table | None,
    new_at: np.ndarray,
) -> Manifest:
    """Ours' pieces with the edits applied, as a manifest."""
    new_chunk = None
    if new_rows is not None and new_rows.num_rows:
        with tempfile.TemporaryDirectory(prefix="dsa-merge-") as tmp:
            new_chunk, _ = write_chunk(store, new_rows, list(ov.schema.columns), tmp_dir=Path(tmp))
    # events at ours positions: (position, 0 insert-before / 1 delete / 2 replace, payload)
    events: list[tuple[int, int, int, Any]] = []
    for i, (qq, t) in enumerate(zip(inserts_q.tolist(), inserts_t.tolist(), strict=True)):
        events.append((qq, 0, i, ("T", t)))
    for o in np.unique(deletes).tolist():
        events.append((o, 1, 0, None))
    for o, t in zip(replace_o.tolist(), replace_t.tolist(), strict=True):
        events.append((o, 2, 0, ("T", t)))
    for i, o in enumerate(new_at.tolist()):
        events.append((o, 2, 0, ("N", i)))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    out: list[Piece] = []
    cur = 0
    om, tm = ov.manifest, tv.manifest
    done: set[int] = set()  # ours positions already deleted or replaced
    for pos, kind, _, payload in events:
        if pos > cur:
            out.extend(Piece(c, s, n) for c, s, n in om.slices(cur, pos - cur))
            cur = pos
        if kind == 0:
            side, i = payload
            out.extend(Piece(c, s, n) for c, s, n in tm.slices(i, 1))
            continue
        if pos in done:
            continue
        done.add(pos)
        if kind == 2:
            side, i = payload
            if side == "T":
                out.extend(Piece(c, s, n) for c, s, n in tm.slices(i, 1))
            else:
                assert new_chunk is not None
                out.append(Piece(new_chunk, i, 1))
        cur = pos + 1
    total = om.row_count
    if total > cur:
        out.extend(Piece(c, s, n) for c, s, n in om.slices(cur, total - cur))
    return Manifest(tuple(_coalesce(out)))


def _coalesce(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if out and out[-1].chunk == p.chunk and out[-1].start + out[-1].length == p.start:
            last = out[-1]
            out[-1] = Piece(last.chunk, last.start, last.length + p.length)
        else:
            out.append(p)
    return out


def three_way(
    store: ObjectStore,
    base: Commit,
    ours: Commit,
    theirs: Commit,
    primary_key: list[str] | None,
    strategy: str,
) -> tuple[dict[str, TableEntry], list[dict[str, Any]], int]:
    """Every table merged: (tables, conflicts shown, conflict count)."""
    tables: dict[str, TableEntry] = {}
    conflicts: list[dict[str, Any]] = []
    count = 0
    for name in sorted(set(base.tables) | set(ours.tables) | set(theirs.tables)):
        tm = merge_table(store, name, base, ours, theirs, primary_key, strategy)
        conflicts.extend(tm.conflicts)
        count += tm.conflict_count
        if tm.entry is not None:
            tables[name] = tm.entry
    return tables, conflicts[:MAX_CONFLICTS_SHOWN], count
