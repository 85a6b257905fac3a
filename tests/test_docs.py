"""Keep the docs honest: every setting and every route must be documented.

- docs/configuration.md names every ``Settings`` field as ``DSA_<NAME>``, and
  its settings table names no variable that ``Settings`` lacks.
- docs/api.md names every route path registered by ``api.app.create_app()``
  (and each method with its path, as ``GET /path``).

Needs no running services: importing and building the app connects to nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.config import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
FRAMEWORK_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
_CONVERTER = re.compile(r"\{(\w+):\w+\}")  # {ref:path} -> {ref}


def _env_names() -> list[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "DSA_", f"Settings' env_prefix is {prefix!r}; update docs and this test"
    return [prefix + name.upper() for name in Settings.model_fields]


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [env for env in _env_names() if f"`{env}`" not in text]
    assert not missing, f"docs/configuration.md does not document: {', '.join(missing)}"


def test_configuration_table_has_no_stale_settings() -> None:
    text = (DOCS / "configuration.md").read_text()
    settings_part = text.split("## Test suite only")[0]
    documented = set(re.findall(r"^\|\s*`(DSA_\w+)`", settings_part, flags=re.MULTILINE))
    stale = sorted(documented - set(_env_names()))
    assert not stale, f"docs/configuration.md documents settings that do not exist: {stale}"


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers and mounts.

    Older FastAPI flattens included routers into plain routes; newer releases
    keep them as ``_IncludedRouter`` objects (``original_router`` plus an
    ``include_context`` with the include prefix). Both are handled.
    """
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            ctx = getattr(route, "include_context", None)
            yield from _walk(original.routes, prefix + (getattr(ctx, "prefix", "") or ""))
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if getattr(route, "endpoint", None) is None and hasattr(route, "routes"):  # Mount
            yield from _walk(route.routes, prefix + path)
            continue
        yield prefix + path, set(getattr(route, "methods", None) or ())


def _app_routes() -> dict[str, set[str]]:
    from api.app import create_app

    app = create_app()
    routes: dict[str, set[str]] = {}
    for path, methods in _walk(app.routes):
        if path not in FRAMEWORK_PATHS:
            routes.setdefault(path, set()).update(methods - IGNORED_METHODS)
    # the walker must see at least what the OpenAPI schema lists
    walked = {_CONVERTER.sub(r"{\1}", p) for p in routes}
    unseen = set(app.openapi()["paths"]) - walked
    assert not unseen, f"route walker missed {sorted(unseen)}; FastAPI internals changed?"
    return routes


def _mentions(text: str, path: str, method: str | None = None) -> bool:
    spellings = {path, _CONVERTER.sub(r"{\1}", path)}
    for p in spellings:
        pattern = re.escape(p) + r"(?![\w{/-])"
        if method:
            pattern = r"\b" + method + r"\s+" + pattern
        if re.search(pattern, text):
            return True
    return False


def test_every_route_path_is_documented() -> None:
    text = (DOCS / "api.md").read_text()
    missing = sorted(p for p in _app_routes() if not _mentions(text, p))
    assert not missing, "docs/api.md does not mention these paths:\n" + "\n".join(missing)


def test_every_route_method_is_documented() -> None:
    text = (DOCS / "api.md").read_text()
    missing = sorted(
        f"{m} {p}"
        for p, methods in _app_routes().items()
        for m in methods
        if not _mentions(text, p, m)
    )
    assert not missing, (
        "docs/api.md does not mention these operations as 'METHOD /path':\n" + "\n".join(missing)
    )


def _curl_requests(text: str) -> Iterator[tuple[str, str, str]]:
    """(method, path, the command) of every curl example in ``sh`` blocks."""
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in re.split(r"\n(?=\S)", block.replace("\\\n", " ")):
            for m in re.finditer(r"curl ([^|\n]*)", command):
                args = m.group(1)
                url = re.search(r"""["']?\$DSA(/[^\s"'?]*)""", args)
                if url is None:
                    continue
                method = re.search(r"-X\s+(\w+)", args)
                if method:
                    verb = method.group(1)
                elif (
                    re.search(r"(^|\s)-(d|F)\s|--form-string|--data\b", args) and " -G" not in args
                ):
                    verb = "POST"
                else:
                    verb = "GET"
                yield verb, url.group(1), args.strip()


def _matches(route: str, path: str) -> bool:
    pattern = "^"
    for part in re.split(r"(\{\w+(?::\w+)?\})", route):
        if part.startswith("{"):
            pattern += ".+" if ":path" in part else "[^/]+"
        else:
            pattern += re.escape(part)
    return re.match(pattern + "$", path) is not None


def test_every_curl_example_names_a_real_operation() -> None:
    """Each example in docs/api.md (and the README) asks for a method and a
    path the app serves: a renamed or removed endpoint breaks the docs' own
    test, not a reader's paste."""
    routes = _app_routes()
    seen = 0
    bad = []
    for doc in (DOCS / "api.md", DOCS.parent / "README.md", DOCS / "clients.md"):
        for verb, path, command in _curl_requests(doc.read_text()):
            seen += 1
            concrete = re.sub(r"\$\{?\w+\}?", "x", path)
            if not any(_matches(r, concrete) and verb in m for r, m in routes.items()):
                bad.append(f"{doc.name}: {verb} {path}  ({command[:60]})")
    assert seen >= 20, seen
    assert not bad, "examples of operations the app does not serve:\n" + "\n".join(bad)
