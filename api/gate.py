"""Who may read the service endpoints that say how the installation is built.

- ``/metrics``: with ``DSA_METRICS_TOKEN`` set, only a request carrying
  ``Authorization: Bearer <that token>`` (Prometheus' ``bearer_token``);
  else anyone who reaches the port, as before.
- ``/docs``, ``/redoc``, ``/openapi.json``: with ``DSA_PUBLIC_DOCS=false``,
  only a signed-in caller (an access token, an API token or the web UI's
  session cookie); else anyone.

The distributed manifests (docker-compose.yml, k8s/) turn both on; the
embedded ``dsa up`` on a laptop leaves them open. Health checks
(``/healthz``, ``/readyz``) stay open: orchestrators call them without
credentials, and they say only "ok".
"""

from __future__ import annotations

import hmac
import json

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from core.config import get_settings
from core.errors import DsaError, Unauthorized
from features.auth import service as auth_service
from features.web import service as web_service

DOCS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _signed_in(scope: Scope) -> bool:
    token = _bearer(scope) or web_service.session_token(scope)
    if not token:
        return False
    try:
        auth_service.user_from_bearer(token)
    except DsaError:
        return False
    return True


class ServiceGateMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http":
            s = get_settings()
            if path == "/metrics" and s.metrics_token:
                given = (_bearer(scope) or "").encode()
                if not hmac.compare_digest(given, s.metrics_token.encode()):
                    await _refuse(send, "send the metrics token: 'Authorization: Bearer <token>'")
                    return
            elif (
                path in DOCS
                and not s.public_docs
                and not await anyio.to_thread.run_sync(_signed_in, scope)
            ):
                await _refuse(send, "sign in to read the API documentation")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, detail: str) -> None:

    body = json.dumps(Unauthorized(detail).to_problem()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
