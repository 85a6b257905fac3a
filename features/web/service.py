"""The web UI's toolkit, the one module other features' pages import.

Every feature's ``ui.py`` renders its pages with it and calls its own
feature's service for the data, exactly as its REST routes do. The toolkit
is four small modules, re-exported here (decision 0017):

- ``sessions``: the cookie session, CSRF, sign-in and sign-out, the current
  user, and the middleware that gives every visitor a session;
- ``templating``: the Jinja environment, its filters, ``render``, ``redirect``;
- ``error_pages``: a domain error as an HTML page;
- ``routing``: ``UiRoute`` (the route class of every UI router) and form helpers.

Presenters (the data grid, the changes grid) live with the pages that draw
them (``features/data/present.py``, ``features/compare/present.py``).
"""

from __future__ import annotations

from features.web.error_pages import error_page
from features.web.routing import UiRoute, split_list, validated
from features.web.sessions import (
    CSRF_HEADER,
    SessionMiddleware,
    check_csrf,
    current_user,
    remember_device,
    require_user,
    session_token,
    sign_in,
    sign_out,
)
from features.web.templating import (
    STATIC_DIR,
    cell_html,
    redirect,
    render,
    templates,
    url,
)

__all__ = [
    "CSRF_HEADER",
    "STATIC_DIR",
    "SessionMiddleware",
    "session_token",
    "UiRoute",
    "cell_html",
    "check_csrf",
    "current_user",
    "error_page",
    "redirect",
    "remember_device",
    "render",
    "require_user",
    "sign_in",
    "sign_out",
    "split_list",
    "templates",
    "url",
    "validated",
]
