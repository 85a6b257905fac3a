"""FastAPI app assembly: routers of every feature, error handlers, metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import Histogram

from api import errors
from core import db, queue
from core.config import get_settings
from core.logs import configure as configure_logs
from features.auth.routes import router as auth_router
from features.commits.routes import router as commits_router
from features.data.routes import router as data_router
from features.datasets.routes import router as datasets_router
from features.health.routes import router as health_router
from features.jobs.routes import router as jobs_router
from features.refs.routes import router as refs_router
from features.uploads.routes import router as uploads_router

REQUEST_SECONDS = Histogram(
    "dsa_http_request_seconds", "HTTP request latency", ["method", "route", "status"]
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    queue.configure()
    yield
    db.close_pool()


def create_app() -> FastAPI:
    configure_logs(get_settings().log_level)
    app = FastAPI(
        title="DSA",
        version="0.1.0",
        description="A Git-like versioned dataset store",
        lifespan=_lifespan,
    )
    errors.install(app)
    for router in (
        health_router,
        auth_router,
        datasets_router,
        refs_router,
        uploads_router,
        jobs_router,
        data_router,
        commits_router,
    ):
        app.include_router(router)

    @app.middleware("http")
    async def _metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        REQUEST_SECONDS.labels(
            request.method, getattr(route, "path", "unmatched"), str(response.status_code)
        ).observe(time.perf_counter() - start)
        return response

    return app
