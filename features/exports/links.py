"""Signed export links: a URL that stands in for the bearer token.

A link is the export's URL with three more query parameters: ``expires``
(Unix seconds), ``uid`` (the user who made it) and ``sig``, the HMAC-SHA256
(base64url, no padding) of::

    dsa.export-link.v1 \\n <path> \\n <every other query parameter, sorted, URL-encoded>

under ``DSA_EXPORT_LINK_KEY`` (default: derived from the JWT signing key).
Changing any parameter or the path breaks the signature; rotating the key
voids every link. At use the link's user must still be able to read the
dataset, so revoking a role revokes the links made under it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from core.config import get_settings
from features.exports.errors import BadSignature, LinkExpired

SIGNED = ("expires", "uid", "sig")
_DOMAIN = b"dsa.export-link.v1"


def _key() -> bytes:
    s = get_settings()
    if s.export_link_key:
        return s.export_link_key.encode()
    return s.key("export-link")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    return urlencode(sorted(params), quote_via=quote)


def signature(path: str, params: Iterable[tuple[str, str]]) -> str:
    msg = b"\n".join([_DOMAIN, path.encode(), canonical_query(params).encode()])
    mac = hmac.new(_key(), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(path: str, params: dict[str, str], *, user_id: uuid.UUID, expires_at: int) -> str:
    """The signed query string for ``path`` (the decoded URL path)."""
    items = [*params.items(), ("expires", str(expires_at)), ("uid", str(user_id))]
    return canonical_query(items) + "&sig=" + signature(path, items)


def verify(path: str, items: list[tuple[str, str]]) -> uuid.UUID:
    """The signing user's id if the request's path and query carry a valid,
    unexpired signature; 403 otherwise."""
    sigs = [v for k, v in items if k == "sig"]
    rest = [(k, v) for k, v in items if k != "sig"]
    keys = [k for k, _ in rest]
    if len(sigs) != 1 or len(set(keys)) != len(keys):
        raise BadSignature("the export link is not valid")
    if not hmac.compare_digest(sigs[0].encode(), signature(path, rest).encode()):
        raise BadSignature(
            "the export link's signature does not match (altered, or the key was rotated)"
        )
    got = dict(rest)
    try:
        expires = int(got["expires"])
        user_id = uuid.UUID(got["uid"])
    except (KeyError, ValueError):
        raise BadSignature("the export link is not valid") from None
    if expires < time.time():
        raise LinkExpired("the export link has expired; ask for a new one")
    return user_id
