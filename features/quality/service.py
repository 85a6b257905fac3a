"""Quality gates: rules per dataset, a score per commit, and branches that
refuse commits below the threshold.

A dataset's configuration is its rules (``checks``), a threshold (0–100)
and the branches it gates. A commit's report runs every rule on its tables
and scores the weighted share of passing rules; it is computed once per
commit and version of the rules (``quality_result``, keyed by the rules'
digest) and reused by the API, history and the gate.

``require_gate`` is called by whatever is about to put a commit on a branch
(an import's landing, a merge, a fast-forward, a revert), before its
transaction: on a gated branch a commit scoring below the threshold raises
``QualityGateFailed`` listing the failing rules, and the branch does not
move. Other branches take it, and show its score.
"""

from __future__ import annotations

import uuid
from typing import Any

import blake3
import orjson
import psycopg
import structlog
from psycopg.types.json import Jsonb

from core import db
from core.objects import Commit, get_commit
from core.storage import get_store
from features.auth.service import User
from features.datasets import service as datasets_service
from features.datasets.errors import RoleRequired
from features.quality import checks
from features.quality.errors import InvalidRule, QualityGateFailed
from features.refs import service as refs_service
from features.webhooks import service as webhooks_service

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)
NO_RULES: dict[str, Any] = {"rules": [], "threshold": 100.0, "gate_branches": [], "digest": ""}


def digest(rules: list[dict[str, Any]], threshold: float) -> str:
    """What a report depends on of the configuration (not the gated branches)."""
    body = orjson.dumps({"rules": rules, "threshold": threshold}, option=orjson.OPT_SORT_KEYS)
    return blake3.blake3(body).hexdigest()


def config(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> dict[str, Any]:
    """The dataset's rules, threshold and gated branches (none by default)."""
    row = conn.execute(Q.get_config, {"dataset_id": dataset_id}).fetchone()
    return dict(row) if row is not None else {**NO_RULES, "updated_at": None}


def put_config(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, body: dict[str, Any], *, by: str
) -> dict[str, Any]:
    """Replace the dataset's configuration; every rule is checked first."""
    names = [r["name"] for r in body["rules"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidRule(f"rule names must be unique: {', '.join(dup)}", rule=dup[0])
    for rule in body["rules"]:
        checks.validate(rule)
    try:
        version = digest(body["rules"], body["threshold"])
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, say
        raise InvalidRule("a rule's args hold a value JSON cannot carry exactly") from None
    for branch in body["gate_branches"]:
        refs_service.validate_name(branch)
    row = conn.execute(
        Q.put_config,
        {
            "dataset_id": dataset_id,
            "rules": Jsonb(body["rules"]),
            "threshold": body["threshold"],
            "gate_branches": body["gate_branches"],
            "digest": version,
            "updated_by": by,
        },
    ).fetchone()
    assert row is not None
    return dict(row)


def report_at(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ref: str) -> dict[str, Any]:
    """The quality report of the commit ``ref`` names (the API's ``GET …/quality``)."""
    commit_id = refs_service.resolve(conn, dataset_id, ref)
    cfg = config(conn, dataset_id)
    body = report(conn, dataset_id, commit_id, cfg)
    return {**body, "gated": ref in cfg["gate_branches"]}


def report(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    commit_id: str,
    cfg: dict[str, Any],
    commit: Commit | None = None,
) -> dict[str, Any]:
    """A commit's report under ``cfg``: remembered, or computed now and remembered."""
    if not cfg["rules"]:
        return _scored(commit_id, cfg, [])
    known = remembered(conn, dataset_id, [commit_id], cfg)
    if commit_id in known:
        return known[commit_id]
    store = get_store()
    commit = commit or get_commit(store, commit_id)
    parent = get_commit(store, commit.parents[0]) if commit.parents else None
    body = _scored(commit_id, cfg, checks.evaluate(store, commit, parent, cfg["rules"]))
    with db.transaction() as w:
        w.execute(
            Q.put_result,
            {
                "dataset_id": dataset_id,
                "commit_id": commit_id,
                "digest": cfg["digest"],
                "report": Jsonb(body),
            },
        )
    return body


def remembered(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit_ids: list[str], cfg: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The reports computed before among ``commit_ids`` (no evaluation: what
    history shows as badges)."""
    if not cfg["rules"] or not commit_ids:
        return {}
    rows = conn.execute(
        Q.get_results,
        {"dataset_id": dataset_id, "digest": cfg["digest"], "commit_ids": commit_ids},
    ).fetchall()
    return {r["commit_id"]: dict(r["report"]) for r in rows}


def _scored(commit_id: str, cfg: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(r["weight"] for r in results)
    passing = sum(r["weight"] for r in results if r["passed"])
    score = round(100.0 * passing / total, 2) if total else 100.0
    return {
        "commit_id": commit_id,
        "score": score,
        "threshold": float(cfg["threshold"]),
        "passed": score >= float(cfg["threshold"]),
        "results": results,
    }


def require_gate(dataset_id: uuid.UUID, branch: str, commit: Commit) -> dict[str, Any] | None:
    """Raise ``QualityGateFailed`` if ``commit`` would land on a gated
    ``branch`` scoring below the threshold; its report when the branch is
    gated, else None (nothing evaluated)."""
    with db.read() as conn:
        cfg = config(conn, dataset_id)
        if branch not in cfg["gate_branches"] or not cfg["rules"]:
            return None
        body = report(conn, dataset_id, commit.id, cfg, commit)
    if body["passed"]:
        return body
    failing = [
        {k: r[k] for k in ("name", "table", "column", "check", "failing_rows", "detail", "sample")}
        for r in body["results"]
        if not r["passed"]
    ]
    _failed(uuid.UUID(str(dataset_id)), branch, commit.id, body, gated=True)
    raise QualityGateFailed(
        f"branch {branch!r} is gated: this commit scores {body['score']:g}, below the "
        f"threshold {body['threshold']:g}; failing: "
        + ", ".join(f"{f['name']} ({f['failing_rows']} rows)" for f in failing),
        branch=branch,
        score=body["score"],
        threshold=body["threshold"],
        failing=failing,
        commit_id=commit.id,
    )


def require_gate_at(
    conn: psycopg.Connection[Any], user: User, dataset_id: uuid.UUID, branch: str, ref: str
) -> None:
    """``require_gate`` for a branch about to be created at, or reset to, the
    commit ``ref`` names: a writer cannot put on a gated branch what an
    import could not. The dataset's admins may (the way out when a gate is
    wrong)."""
    try:
        datasets_service.require(conn, user, dataset_id, "admin")
        return
    except RoleRequired:
        pass
    with db.read() as r:
        cfg = config(r, dataset_id)
    if branch not in cfg["gate_branches"] or not cfg["rules"]:
        return
    commit_id = refs_service.resolve(conn, dataset_id, ref)
    require_gate(dataset_id, branch, get_commit(get_store(), commit_id))


def follow(dataset_id: str, commit_id: str, branch: str | None = None) -> None:
    """Compute the report of a commit ``branch`` moved to (the task
    ``quality.follow``), for datasets with rules, and tell the dataset's
    webhooks when it is below the threshold; never fails."""
    try:
        with db.read() as conn:
            cfg = config(conn, uuid.UUID(dataset_id))
            if not cfg["rules"]:
                return
            body = report(conn, uuid.UUID(dataset_id), commit_id, cfg)
        if not body["passed"] and branch is not None:
            _failed(uuid.UUID(dataset_id), branch, commit_id, body, gated=False)
    except Exception:
        log.warning("could not compute a quality report", commit=commit_id, exc_info=True)


def _failed(
    dataset_id: uuid.UUID, branch: str, commit_id: str, body: dict[str, Any], *, gated: bool
) -> None:
    """The ``quality.failed`` event: a commit below the threshold, refused by
    a gate (``gated``: it did not land) or on a branch it moved. Never
    raises: the refusal, not its telling, is what the caller must see."""
    try:
        webhooks_service.emit_now(
            dataset_id,
            "quality.failed",
            {
                "ref": branch,
                "commit_id": commit_id,
                "score": body["score"],
                "threshold": body["threshold"],
                "failing": [r["name"] for r in body["results"] if not r["passed"]],
                "refused": gated,
            },
        )
    except Exception:
        log.warning("could not record a quality.failed event", commit=commit_id, exc_info=True)
