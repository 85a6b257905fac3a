"""Every problem code is a class (decision 0018): walk them all and check
that codes are unique, statuses and titles come from the category, and the
problem document each gives is the documented shape."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import features
from core import errors as core_errors
from core.errors import (
    BadRequest,
    Conflict,
    DsaError,
    Forbidden,
    Invalid,
    NotFound,
    StoredObjectError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)

ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = {
    DsaError,
    NotFound,
    Conflict,
    Invalid,
    BadRequest,
    Unauthorized,
    Forbidden,
    TooLarge,
    UnsupportedMedia,
    Unavailable,
    StoredObjectError,  # 500s that name the stored object that is damaged or missing
}


def _error_modules() -> list[str]:
    names = ["core.errors", "api.errors"]
    for info in pkgutil.iter_modules(features.__path__):
        if (ROOT / "features" / info.name / "errors.py").exists():
            names.append(f"features.{info.name}.errors")
    return names


def _classes() -> list[type[DsaError]]:
    """Every error class defined in an errors module, by its module and name
    (classes made on the fly, such as api.errors' one-off HttpError, are not)."""
    out: list[type[DsaError]] = []
    for name in _error_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, DsaError)
                and value.__module__ == name
                and value not in out
            ):
                out.append(value)
    return out


CLASSES = _classes()
CODED = [c for c in CLASSES if c not in CATEGORIES]


def _category(cls: type[DsaError]) -> type[DsaError]:
    return next(c for c in cls.__mro__ if c in CATEGORIES)


def test_the_walk_finds_the_features_errors() -> None:
    names = {c.__name__ for c in CODED}
    assert {"DatasetNotFound", "JobNotFound", "TableRequired", "BadSignature"} <= names
    assert {"ObjectNotFound", "InvalidRequest", "MethodNotAllowed"} <= names


def test_codes_are_unique_except_a_subclass_refining_its_base() -> None:
    by_code: dict[str, list[type[DsaError]]] = {}
    for cls in CLASSES:
        by_code.setdefault(cls.default_code, []).append(cls)
    for code, classes in by_code.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code
        if len(classes) > 1:  # e.g. UnknownFilterColumn(BadRequest, UnknownColumn)
            roots = [
                c for c in classes if not any(c is not o and issubclass(c, o) for o in classes)
            ]
            assert len(roots) == 1, f"{code!r} is the code of {classes}"


@pytest.mark.parametrize("cls", CODED, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_status_and_title_come_from_the_category(cls: type[DsaError]) -> None:
    """A coded class sets only its code: status and title are its category's.
    The one exception is a class that is a category of its own (a direct
    DsaError subclass such as 416 RangeNotSatisfiable or 405 MethodNotAllowed)."""
    category = _category(cls)
    if category is DsaError:
        assert cls.__bases__ == (DsaError,) and cls.status != 500 and cls.title
        return
    assert "status" not in vars(cls) and "title" not in vars(cls)
    assert (cls.status, cls.title) == (category.status, category.title)
    assert cls.default_code != category.default_code


@pytest.mark.parametrize("cls", CODED, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_problem_document_of_every_class(cls: type[DsaError]) -> None:
    err = cls("something precise happened", line=3)
    assert err.code == cls.default_code
    assert err.to_problem("/x") == {
        "type": "https://dsa.dev/problems/" + cls.default_code.replace("_", "-"),
        "title": cls.title,
        "status": cls.status,
        "detail": "something precise happened",
        "code": cls.default_code,
        "instance": "/x",
        "line": 3,
    }
    assert isinstance(err, _category(cls))


def test_the_code_keyword_still_overrides_for_unconverted_callers() -> None:
    err = core_errors.Invalid("x", code="schema_mismatch", missing=["a"])
    assert err.to_problem() == {
        "type": "https://dsa.dev/problems/schema-mismatch",
        "title": "Invalid input",
        "status": 422,
        "detail": "x",
        "code": "schema_mismatch",
        "missing": ["a"],
    }


# Files that still raise categories with ``code=`` or compare codes: the
# imports/uploads/merges/refs services and the web UI, being rewritten
# elsewhere. Shrink this list; never grow it.
NOT_YET_CONVERTED: set[str] = set()


LOG_METHODS = ("debug", "info", "warning", "error", "exception")


def test_raise_sites_use_classes_and_handlers_never_compare_codes() -> None:
    """No ``Category(..., code="...")``: a code is a class. The one family
    exempt is ``ImportFailed`` (features/imports/errors.py): a file problem
    whose ``code`` names the reason, with classes only for the reasons the
    importer reacts to. And nothing compares ``.code``."""
    compare = re.compile(r"\.code\s*(==|!=|\bin\b)")
    offenders = []
    for top in ("core", "api", "worker", "features"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in NOT_YET_CONVERTED or rel.startswith("api/client/"):
                continue  # the client reads codes off the wire: matching one is its API
            text = path.read_text()
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, ast.Call):
                    continue
                callee = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if callee in ("ImportFailed", *LOG_METHODS):
                    continue  # a file problem's reason; a log line's field
                if any(k.arg == "code" for k in node.keywords):
                    offenders.append(f"{rel}:{node.lineno}: {callee}(..., code=...)")
            for n, line in enumerate(text.splitlines(), 1):
                if compare.search(line) and "status_code" not in line:
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)
