"""The route class of every UI router, and form helpers for UI handlers."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from core.errors import DsaError, InvalidRequest, NotFound
from features.web.error_pages import error_page
from features.web.sessions import SignInRequired
from features.web.templating import redirect, url

log = structlog.get_logger(__name__)
M = TypeVar("M", bound=BaseModel)


class UiRoute(APIRoute):
    """Routes of the web UI: domain errors become HTML error pages (never a trace),
    and a page that needs a user sends visitors to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect(url("/signin", next=target))
            except DsaError as err:
                if err.status >= 500:
                    log.error("page failed", code=err.code, detail=err.detail)
                return error_page(request, err)
            except RequestValidationError as exc:
                return error_page(request, _invalid_request(request, exc))
            except Exception:
                log.exception("page crashed", path=request.url.path)
                return error_page(
                    request, DsaError("an internal error occurred; it has been logged")
                )
            response.headers["Server-Timing"] = (
                f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            )
            return response

        return route


def _invalid_request(request: Request, exc: RequestValidationError) -> DsaError:
    """A malformed id in the path (/datasets/nope) is no such page; anything
    else is the 422 the API would give."""
    if exc.errors() and all(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
        return NotFound(f"There is no page at {request.url.path}.")
    fields = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
            "message": e.get("msg", ""),
        }
        for e in exc.errors()
    ]
    names = ", ".join(f["field"] for f in fields)
    return InvalidRequest(f"the request is invalid: {names}", errors=fields)


def validated(model: type[M], data: dict[str, Any]) -> M:
    """``model`` built from form data; a pydantic error becomes the same 422 the API gives."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        names = ", ".join(f["field"] or "(form)" for f in fields)
        raise InvalidRequest(f"the form is invalid: {names}", errors=fields) from None


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]
