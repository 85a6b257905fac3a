"""Webhooks: tell other systems what happened to a dataset, as it happens.

A dataset's admins register URLs with the events each wants (``commit``,
``ref.moved``, ``job.failed``, ``quality.failed``, ``schedule.paused``).
When one happens, the feature that made it calls ``emit`` in its own
transaction: one delivery per webhook is written there (an outbox), so a
change that rolls back sends nothing, and a worker posts each delivery
once the transaction has committed (``deliver``, the task
``webhooks.deliver``). What is posted and how it is retried: ``post``.

Deliveries are at least once: a receiver that answers 500, or a worker that
dies mid-post, gets the same delivery again, with the same ``X-DSA-Delivery``
id, until one attempt gets a 2xx or the retry window ends.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import structlog

from core import addresses, audit, db, queue, ratelimit
from core.audit import Actor
from core.config import get_settings
from core.objects import Commit
from features.webhooks import post
from features.webhooks.errors import (
    TooManyWebhooks,
    WebhookAddressNotAllowed,
    WebhookNotFound,
    WebhookUrlUnresolvable,
)

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)
TEST_EVENT = "ping"  # a test delivery: to one webhook, whatever its events


def create(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    url: str,
    events: list[str],
    secret: str | None,
    actor: Actor,
) -> dict[str, Any]:
    """Register a webhook; its secret (the one given, or a new one) is in
    the answer, and never again. The URL's host must resolve, to public
    addresses only unless ``DSA_WEBHOOK_ALLOW_PRIVATE`` (checked again at
    every delivery: an answer that changed is refused then)."""
    check_url(url)
    conn.execute(Q.lock_dataset, {"dataset_id": dataset_id})
    limit = get_settings().webhooks_per_dataset
    count = conn.execute(Q.count_of_dataset, {"dataset_id": dataset_id}).fetchone()
    if count is not None and count["n"] >= limit:
        raise TooManyWebhooks(
            f"the dataset has {limit} webhooks, the most it may have "
            "(DSA_WEBHOOKS_PER_DATASET); delete one first",
            limit=limit,
        )
    secret = secret or secrets.token_urlsafe(32)
    row = conn.execute(
        Q.insert,
        {
            "id": uuid.uuid4(),
            "dataset_id": dataset_id,
            "url": url,
            "events": events,
            "secret": secret,
            "created_by": actor.id,
        },
    ).fetchone()
    assert row is not None
    details = {"url": addresses.redact(url), "events": events}  # endpoints carry tokens in queries
    audit.record(conn, "webhook.create", actor=actor, dataset_id=dataset_id,
                 target=str(row["id"]), details=details)  # fmt: skip
    return {**row, "secret": secret, "last_delivery": None}


def check_url(url: str) -> None:
    """``url``'s host resolves, to addresses a webhook may post to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses.check_address(host, port, allow_private=get_settings().webhook_allow_private)
    except (addresses.Unresolvable, ValueError, UnicodeError) as exc:
        raise WebhookUrlUnresolvable(f"cannot resolve {host!r}: {exc}", host=host) from None
    except addresses.NotAllowed:
        raise WebhookAddressNotAllowed(
            f"{host} resolves to an address of a private or local network; "
            "webhooks only post to public addresses",
            host=host,
        ) from None


def list_of(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(Q.list, {"dataset_id": dataset_id}).fetchall()


def get(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, webhook_id: uuid.UUID
) -> dict[str, Any]:
    row = conn.execute(Q.get, {"id": webhook_id, "dataset_id": dataset_id}).fetchone()
    if row is None:
        raise WebhookNotFound(f"webhook {webhook_id} does not exist")
    return dict(row)


def delete(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, webhook_id: uuid.UUID, *, actor: Actor
) -> None:
    """Remove a webhook, its pending deliveries and its log."""
    if conn.execute(Q.delete, {"id": webhook_id, "dataset_id": dataset_id}).fetchone() is None:
        raise WebhookNotFound(f"webhook {webhook_id} does not exist")
    audit.record(conn, "webhook.delete", actor=actor, dataset_id=dataset_id, target=str(webhook_id))


def deliveries(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    page: int,
    per_page: int,
) -> dict[str, Any]:
    """A webhook's delivery log, newest first, with every attempt."""
    get(conn, dataset_id, webhook_id)
    rows = conn.execute(
        Q.deliveries,
        {"webhook_id": webhook_id, "limit": per_page, "offset": (page - 1) * per_page},
    ).fetchall()
    items = [
        {**{k: v for k, v in r.items() if k not in ("tries", "total")}, "attempts": r["tries"]}
        for r in rows
    ]
    for item in items:
        if item["state"] != "pending":
            item["next_attempt_at"] = None
    total = rows[0]["total"] if rows else 0
    return {"items": items, "total": total, "page": page, "per_page": per_page}


def send_test(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, webhook_id: uuid.UUID, *, by: uuid.UUID
) -> uuid.UUID:
    """A ``ping`` delivery to this webhook alone; its id. At most
    ``DSA_RATE_LIMIT_WEBHOOK_TESTS`` a user (each may hold a worker for a
    slow receiver's timeout, and is retried for a day)."""
    get(conn, dataset_id, webhook_id)
    rule = get_settings().rate_limit_webhook_tests
    if rule:
        ratelimit.hit(rule, "webhook-tests", str(by), what="test events")
    (delivery,) = _emit(conn, dataset_id, TEST_EVENT, {"webhook_id": str(webhook_id)}, webhook_id)
    return delivery


def emit(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, event: str, data: dict[str, Any]
) -> None:
    """``event`` happened to the dataset, in ``conn``'s transaction: a
    delivery for each of its webhooks that asked for it, posted once the
    transaction commits (never if it rolls back). ``data``: the event's
    members beside ``event``, ``delivery_id``, ``at`` and ``dataset``."""
    _emit(conn, dataset_id, event, data, None)


def ref_moved(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    ref: str,
    new: str,
    previous: str,
    *,
    by: str,
    reason: str,
) -> None:
    """The ``ref.moved`` event: any move of a branch."""
    data = {"ref": ref, "commit_id": new, "previous_commit_id": previous, "by": by}
    emit(conn, dataset_id, "ref.moved", {**data, "reason": reason})


def committed(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    branch: str,
    commit_id: str,
    commit: Commit,
    action: str,
    *,
    by: str,
    previous: str | None = None,
) -> None:
    """The ``commit`` event: ``branch`` moved to a new commit made by
    ``action`` (import, merge, revert), or fast-forwarded by a merge to
    one (``previous``: where it was, when not the commit's first parent)."""
    data = {
        "ref": branch,
        "commit_id": commit_id,
        "previous_commit_id": previous or commit.parents[0],
        "action": action,
        "by": by,
        "message": commit.message[:1000],
    }
    emit(conn, dataset_id, "commit", data | ({"fast_forward": True} if previous else {}))


def emit_now(dataset_id: uuid.UUID, event: str, data: dict[str, Any]) -> None:
    """``emit`` in a transaction of its own (an event with nothing else to record)."""
    with db.transaction() as conn:
        emit(conn, dataset_id, event, data)


def _emit(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    event: str,
    data: dict[str, Any],
    only: uuid.UUID | None,
) -> list[uuid.UUID]:
    body = orjson.dumps(data, default=str).decode()
    rows = conn.execute(
        Q.emit, {"dataset_id": dataset_id, "event": event, "data": body, "only": only}
    ).fetchall()
    ids = [r["id"] for r in rows]
    if ids:
        db.after_commit(conn, lambda: _send(ids))
    return ids


def _send(ids: list[uuid.UUID]) -> None:
    """Queue the deliveries; a broker that is down is logged (the sweep sends them)."""
    try:
        for i in ids:
            queue.enqueue("webhooks.deliver", str(i))
    except Exception:
        log.warning("could not queue webhook deliveries", count=len(ids), exc_info=True)


def deliver(delivery_id: uuid.UUID) -> None:
    """One attempt at a delivery (the task ``webhooks.deliver``), if it is
    due and no other worker holds it: post, record the attempt, and mark it
    delivered, or due again after a backoff, or failed past the window."""
    settings = get_settings()
    lease = post.lease_s(settings.webhook_timeout_s)
    with db.transaction() as conn:
        row = conn.execute(Q.claim, {"id": delivery_id, "lease_s": lease}).fetchone()
    if row is None:
        return  # delivered, failed, not due, or another worker has it
    answer = post.send(
        row["url"],
        row["body"],
        headers=post.headers(row["secret"], row["body"], event=row["event"], delivery=row["id"]),
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
    )
    attempt = {"id": row["id"], "attempt": row["attempts"]}
    with db.transaction() as conn:
        conn.execute(Q.attempted, {**attempt, **answer.row()})
        if answer.ok:
            conn.execute(Q.delivered, attempt)
            return
        delay = post.backoff(row["attempts"], settings.webhook_retry_base_s)
        ended = conn.execute(
            Q.retry_later,
            {**attempt, "delay_s": delay, "window_s": settings.webhook_retry_window},
        ).fetchone()
    log.info(
        "webhook delivery failed",
        delivery=str(row["id"]),
        attempt=row["attempts"],
        status=answer.status_code,
        error=answer.error,
        state=ended["state"] if ended else None,
    )


def sweep(limit: int = 1000) -> int:
    """Queue the deliveries due now (the beat task ``webhooks.sweep``): the
    retries, and any whose worker died or whose task never reached the
    queue; how many."""
    settings = get_settings()
    lease = post.lease_s(settings.webhook_timeout_s)
    with db.transaction() as conn:
        # deliveries past their window without a last attempt (a worker died
        # on it, or it never got one): failed, never posted after the window
        conn.execute(Q.give_up, {"window_s": settings.webhook_retry_window})
        ids = [r["id"] for r in conn.execute(Q.due, {"limit": limit, "lease_s": lease})]
    _send(ids)
    return len(ids)


def expire() -> int:
    """Forget deliveries that ended past ``DSA_WEBHOOK_LOG_RETENTION``; how many."""
    with db.transaction() as conn:
        keep = get_settings().webhook_log_retention
        return conn.execute(Q.expire, {"keep_s": keep}).rowcount
