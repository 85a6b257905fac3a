"""Templates: one Jinja environment over every feature's ``templates/``
directory, the filters pages share, ``render`` and ``redirect``."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup, escape

from features.web.sessions import session

_FEATURES = Path(__file__).resolve().parent.parent
STATIC_DIR = Path(__file__).resolve().parent / "static"
HTMX = "htmx-2.0.4.min.js"


def _template_dirs() -> list[str]:
    return [str(p) for p in sorted(_FEATURES.glob("*/templates")) if p.is_dir()]


def _static_version() -> str:
    h = hashlib.blake2b(digest_size=6)
    for p in sorted(STATIC_DIR.iterdir()):
        h.update(p.name.encode())
        h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


def short(commit_id: str | None) -> str:
    return (commit_id or "")[:10]


def when(value: Any) -> str:
    """A time for people: '5 minutes ago' or 'in 3 days' within a month, else the date."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    s = (datetime.now(UTC) - value).total_seconds()
    future, s = s < 0, abs(s)
    if s < 45:
        return "just now"
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            k = int(s // n)
            if unit == "day" and k > 30:
                break
            span = f"{k} {unit}{'s' if k != 1 else ''}"
            return f"in {span}" if future else f"{span} ago"
    return str(value.strftime("%Y-%m-%d"))


def iso(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value or "")


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def size(value: int) -> str:
    """Bytes for people: 0 B, 812 B, 4.2 kB, 57.3 MB, 1.2 GB (powers of 1000)."""
    n = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def cell_html(value: Any) -> str:
    """One value in a grid, as HTML: null shown as such, empty strings visible.
    The features' fast grid renderers draw every cell with it."""
    if value is None:
        return '<span class="null">null</span>'
    if value == "" and isinstance(value, str):
        return '<span class="null">empty</span>'
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):  # lists and structs, in their JSON form
        return str(escape(json.dumps(value, ensure_ascii=False, separators=(", ", ": "))))
    return str(escape(str(value)))


def cell(value: Any) -> Markup:
    """The ``cell`` filter: ``cell_html`` for templates."""
    return Markup(cell_html(value))


def url(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    q = {k: v for k, v in params.items() if v not in (None, "", [])}
    return path + ("?" + urlencode(q, doseq=True) if q else "")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_template_dirs()),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.Undefined,
    )
    env.filters.update(
        short=short, when=when, iso=iso, number=number, size=size, cell=cell, q=quote
    )
    env.globals.update(url=url, static_version=_static_version(), htmx=HTMX)
    return env


_templates: jinja2.Environment | None = None


def templates() -> jinja2.Environment:
    """The environment, every template compiled on the first call (the app calls
    it while it is built, so that no visitor's request pays for it)."""
    global _templates
    if _templates is None:
        env = _env()
        for name in env.list_templates(extensions=["html"]):
            env.get_template(name)
        _templates = env
    return _templates


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    sess = session(request)
    html = (
        templates()
        .get_template(name)
        .render(
            request=request,
            user=sess.user,
            csrf=sess.csrf,
            path=request.url.path,
            **ctx,
        )
    )
    return HTMLResponse(
        html,
        status_code=status,
        # X-Frame-Options, Referrer-Policy and the rest: on every answer (api/app.py)
        headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP},
    )


# The pages' policy: scripts and styles from this site alone, no inline
# script (the templates have no inline handlers: app.js delegates
# data-confirm and data-autosubmit; htmx runs with allowEval off), inline
# style attributes allowed; nothing framed, no plugins, forms post here.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)
