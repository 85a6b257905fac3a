"""RFC 9457 problem documents, built in one place from core's domain errors.

Requests for paths no route serves (404, 405) get a problem document under
``/api`` and on the service endpoints, and an HTML error page in the web
UI's layout everywhere else (``/foo``, ``/datasets/<id>/nope``), unless the
client asks for JSON and not HTML.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import BadRequest, DsaError, InvalidRequest, NotFound, TooManyRequests
from core.models import Problem
from features.web import service as web

log = structlog.get_logger(__name__)

PROBLEM = "application/problem+json"
# paths whose errors are always problem documents (besides /api/...)
_SERVICE_PATHS = frozenset(
    {"/api", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}
)


class UnstorableValue(BadRequest):
    """400: input PostgreSQL refuses (NUL characters, out-of-range numbers)."""

    default_code = "unstorable_value"


class MethodNotAllowed(DsaError):
    """405: a path served, but not for this method (raised by routing)."""

    status = 405
    title = "Method not allowed"
    default_code = "method_not_allowed"


def _http_error(exc: StarletteHTTPException) -> DsaError:
    """Routing's 404 and 405 as domain errors; any other status Starlette
    raises (none today) as a one-off ``http_error`` of that status."""
    detail = str(exc.detail)
    if exc.status_code == 404:
        return NotFound(detail)
    if exc.status_code == 405:
        return MethodNotAllowed(detail)
    attrs = {"status": exc.status_code, "title": "Error", "default_code": "http_error"}
    return type("HttpError", (DsaError,), attrs)(detail)


def problem_response(err: DsaError, request: Request | None = None) -> JSONResponse:
    # as the request spelled it: a dataset's name stays a name (api.names)
    instance = request.scope.get("dsa.requested_path", request.url.path) if request else None
    body = err.to_problem(instance=str(instance) if instance else None)
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    if isinstance(err, TooManyRequests):
        headers = {"Retry-After": str(err.retry_after)}
    return JSONResponse(body, status_code=err.status, media_type=PROBLEM, headers=headers)


def wants_html(request: Request) -> bool:
    """Whether an error on this request is shown as a web page: not under
    ``/api``, ``/static`` or the service endpoints, and not asked for as JSON."""
    path = request.url.path
    if path in _SERVICE_PATHS or path.startswith(("/api/", "/static/")):
        return False
    accept = request.headers.get("accept", "")
    return not ("json" in accept and "text/html" not in accept)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc), "message": e.get("msg", ""), "type": e.get("type")})
    return out


# the error answers a route may give, documented on every operation of /openapi.json
PROBLEM_STATUSES = (400, 401, 403, 404, 405, 409, 413, 415, 416, 422, 429, 500, 503)


def document_problems(app: FastAPI) -> None:
    """/openapi.json says what the errors really are: every operation may
    answer these statuses with a problem document (``application/problem+json``,
    the ``Problem`` schema), FastAPI's own 422 schema included, which the
    handlers below never send."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema()
        problem = {
            "description": "a problem document (docs/api.md, Errors)",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                for param in operation.get("parameters", []):
                    if param.get("in") == "path" and param.get("name") == "dataset_id":
                        # api/names.py: a name stands for the id
                        param["schema"] = {"type": "string", "title": "Dataset id or name"}
                responses = operation.setdefault("responses", {})
                for status in PROBLEM_STATUSES:
                    responses[str(status)] = problem
        # /docs gets "Authorize": a bearer token (a login's JWT or an API
        # token); every operation takes one, and most also answer without
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "POST /api/v1/auth/login's access_token, or an API token",
            }
        }
        schema["security"] = [{"bearer": []}, {}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    @app.exception_handler(DsaError)
    async def _dsa(request: Request, exc: DsaError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed", code=exc.code, detail=exc.detail)
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        fields = ", ".join(e["field"] or "(body)" for e in errors)
        err = InvalidRequest(f"the request is invalid: {fields}", errors=errors)
        return problem_response(err, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        err = _http_error(exc)
        if wants_html(request):
            path = request.url.path
            if exc.status_code == 404:
                err.detail = f"There is no page at {path}."
            elif exc.status_code == 405:
                err.detail = f"{path} does not take {request.method} requests."
            response = web.error_page(request, err)
            for k, v in (exc.headers or {}).items():  # e.g. Allow on a 405
                response.headers[k] = v
            return response
        return problem_response(err, request)

    @app.exception_handler(psycopg.DataError)
    async def _unstorable(request: Request, exc: psycopg.DataError) -> Response:
        """A value the database cannot take (a NUL character in a name, a
        number out of range): the caller's input, so 400, never a 500."""
        log.warning("value refused by the database", path=request.url.path, error=str(exc))
        err = UnstorableValue(
            "the request holds a value that cannot be stored or searched for "
            "(a NUL character, or a number out of range)"
        )
        return (
            web.error_page(request, err) if wants_html(request) else problem_response(err, request)
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(DsaError("an internal error occurred; it has been logged"), request)
