"""The audit log: who did what, when, from where, to which dataset, and how
it ended (table ``audit_log``, append-only; decision 0028).

``record`` writes an entry in the caller's transaction, so an action and its
entry commit or roll back together; ``record_alone`` writes one in a
transaction of its own, for what is refused (a failed sign-in) or reads
(an export). The client address comes from the request being served
(``bind_address``, called by the API's middleware); in a worker it is None.
Reading the log is the ``audit`` feature's.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import Any, Literal, Protocol

import psycopg
from psycopg.types.json import Jsonb

from core import db

Outcome = Literal["ok", "denied", "failed"]
ACTIONS = frozenset(
    {
        "auth.login",
        "auth.login_failed",
        "auth.logout",
        "user.create",
        "user.update",
        "user.password_change",
        "token.create",
        "token.revoke",
        "dataset.create",
        "dataset.update",
        "dataset.delete",
        "dataset.restore",
        "permission.grant",
        "permission.revoke",
        "ref.create",
        "ref.move",
        "ref.delete",
        "ref.protect",
        "merge",
        "revert",
        "import",
        "export",
        "webhook.create",
        "webhook.delete",
    }
)
_address: ContextVar[str | None] = ContextVar("dsa_client_address", default=None)
_INSERT = """
INSERT INTO audit_log (actor_id, actor, action, dataset_id, target, ip, outcome, details)
VALUES (%(actor_id)s, %(actor)s, %(action)s, %(dataset_id)s, %(target)s, %(ip)s,
        %(outcome)s, %(details)s)
"""


class Actor(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def username(self) -> str: ...


def bind_address(address: str | None) -> None:
    """The client address of the request this context serves."""
    _address.set(address)


def record(
    conn: psycopg.Connection[Any],
    action: str,
    *,
    actor: Actor | str | None,
    dataset_id: uuid.UUID | None = None,
    target: str | None = None,
    outcome: Outcome = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """One entry, in ``conn``'s transaction. ``actor`` is the user, or only a
    name (a reflog's ``by``), or None (the system, an unknown caller)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    conn.execute(
        _INSERT,
        {
            "actor_id": None if actor is None or isinstance(actor, str) else actor.id,
            "actor": actor if actor is None or isinstance(actor, str) else actor.username,
            "action": action,
            "dataset_id": dataset_id,
            "target": target,
            "ip": _address.get(),
            "outcome": outcome,
            "details": Jsonb(details or {}),
        },
    )


def record_alone(action: str, **entry: Any) -> None:
    """One entry in a transaction of its own (the action's rolled back, or it wrote nothing)."""
    with db.transaction() as conn:
        record(conn, action, **entry)
