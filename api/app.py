"""FastAPI app assembly: routers of every feature, error handlers, metrics."""

from __future__ import annotations

import gc
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.gate import ServiceGateMiddleware
from api.names import DatasetNameMiddleware
from api.ratelimits import RateLimitMiddleware
from core import audit, chunks, db, queue
from core.config import get_settings
from core.logs import configure as configure_logs
from core.metrics import REQUEST_SECONDS
from features.audit.routes import router as audit_router
from features.audit.ui import router as audit_ui
from features.auth.accounts_ui import router as accounts_ui
from features.auth.routes import router as auth_router
from features.auth.ui import router as auth_ui
from features.commits.routes import router as commits_router
from features.commits.ui import router as commits_ui
from features.compare import align as compare_align
from features.compare.routes import router as compare_router
from features.compare.ui import router as compare_ui
from features.data.routes import router as data_router
from features.data.ui import router as data_ui
from features.datasets.routes import router as datasets_router
from features.datasets.ui import router as datasets_ui
from features.exports.routes import router as exports_router
from features.exports.ui import router as exports_ui
from features.health.routes import router as health_router
from features.integrity.routes import router as integrity_router
from features.jobs.routes import router as jobs_router
from features.merges.routes import router as merges_router
from features.merges.ui import router as merges_ui
from features.quality.routes import router as quality_router
from features.refs.routes import router as refs_router
from features.refs.ui import router as refs_ui
from features.schedules.routes import router as schedules_router
from features.schedules.ui import router as schedules_ui
from features.stats.routes import router as stats_router
from features.stats.ui import router as stats_ui
from features.uploads.routes import router as uploads_router
from features.uploads.ui import router as uploads_ui
from features.web import service as web_service
from features.web.ui import router as web_ui
from features.webhooks.routes import router as webhooks_router
from features.webhooks.ui import router as webhooks_ui

access_log = structlog.get_logger("dsa.access")
# on every answer (issue 15, "Security headers"): no MIME sniffing, no
# framing by other sites, no full URL (export links carry signatures) in the
# Referer sent elsewhere; and over https, HSTS
_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
_HTTPS_HEADERS = (*_HEADERS, (b"strict-transport-security", b"max-age=31536000"))
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    queue.configure()
    chunks.warm_up()
    compare_align.warm_up()
    _warm_up_routes(app)
    yield
    db.close_pool()


def _warm_up_routes(app: FastAPI) -> None:
    """Match a request for no page against every route once: FastAPI builds
    an included router's routes (dependencies, pydantic schemas) on the first
    request that reaches it, ~80 ms in all, which otherwise lands on the first
    request of each router after a start (measured: the first export of a
    fresh API sent its first byte after 155–240 ms; with this, ~20 ms)."""
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/-/warm-up",
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    for route in app.router.routes:
        route.matches(dict(scope))


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}_{route.name}" if route.tags else route.name


def create_app() -> FastAPI:
    configure_logs(get_settings().log_level)
    app = FastAPI(
        title="DSA",
        version="0.1.0",
        description="A Git-like versioned dataset store",
        lifespan=_lifespan,
        # operation ids a generated client can use as names: "datasets_create"
        generate_unique_id_function=_operation_id,
    )
    errors.install(app)
    errors.document_problems(app)
    # Starlette tries routes in order: the hot read path first (measured ~1 ms
    # of route matching per page request when it came after the others)
    for router in (
        data_router,
        health_router,
        auth_router,
        datasets_router,
        refs_router,
        uploads_router,
        jobs_router,
        commits_router,
        compare_router,
        merges_router,
        exports_router,
        stats_router,
        quality_router,
        webhooks_router,
        schedules_router,
        integrity_router,
        audit_router,
    ):
        app.include_router(router)
    # the web UI: pages at / (the shell's router first), static files (htmx, CSS, JS) at /static
    for router in (
        web_ui,
        datasets_ui,
        data_ui,
        commits_ui,
        compare_ui,
        refs_ui,
        merges_ui,
        uploads_ui,
        auth_ui,
        accounts_ui,
        audit_ui,
        exports_ui,
        stats_ui,
        webhooks_ui,
        schedules_ui,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web_service.STATIC_DIR), name="static")
    web_service.templates()  # every template compiled now, not on a visitor's request

    app.add_middleware(DatasetNameMiddleware)  # innermost: routes see ids
    app.add_middleware(web_service.SessionMiddleware)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(ServiceGateMiddleware)
    app.add_middleware(ObserveMiddleware)
    gc.collect()  # start-up's garbage, collected now rather than in a pause on a visitor's request
    return app


def request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


class ObserveMiddleware:
    """Per request: its id (``X-Request-ID``, taken or made, echoed, bound to
    every log line it causes and carried into the tasks it sends), latency
    by route template, and one access-log line. Plain ASGI:
    BaseHTTPMiddleware costs ~1 ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, sent = 500, 0
        rid = request_id(scope)
        structlog.contextvars.bind_contextvars(request_id=rid)
        client = scope.get("client")
        audit.bind_address(client[0] if client else None)  # for the audit log's entries

        async def _send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                own_csp = any(k.lower() == b"content-security-policy" for k, _ in headers)
                message["headers"] = [
                    *headers,
                    (b"x-request-id", rid.encode()),
                    *(
                        h
                        for h in (_HTTPS_HEADERS if scope.get("scheme") == "https" else _HEADERS)
                        if not (own_csp and h[0] == b"content-security-policy")
                    ),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(seconds)
            session = scope.get("dsa_session")
            signed_in = getattr(session, "known_user", None)
            user = scope.get("state", {}).get("user_id") or (
                str(signed_in.id) if signed_in is not None else None
            )
            access_log.info(
                "request",
                method=scope["method"],
                route=route,
                path=scope["path"],
                status=status,
                ms=round(seconds * 1000, 2),
                bytes=sent,
                user_id=user,
            )
            structlog.contextvars.unbind_contextvars("request_id")
