"""The HTML error page: a domain error (or an HTTP 404/405) shown in the
site's layout with its problem document's title, detail, code and location."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from core.errors import DsaError, TooManyRequests
from features.web.templating import render


def error_page(request: Request, err: DsaError) -> HTMLResponse:
    problem = err.to_problem(instance=request.scope.get("dsa.requested_path", request.url.path))
    where = {k: problem[k] for k in ("line", "column", "sheet", "position") if k in problem}
    page = render(
        request,
        "web/error.html",
        status=err.status,
        problem=problem,
        where=where,
        errors=problem.get("errors") or [],
    )
    if isinstance(err, TooManyRequests):
        page.headers["Retry-After"] = str(err.retry_after)
    return page
