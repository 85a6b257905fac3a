"""The filter and sort grammar, checked on an in-memory frame: every
operator, precedence, quoting, nulls, typed literals, and errors with the
offending position."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from core.errors import BadRequest
from core.objects import Schema
from core.schema import Column
from features.data import service as data_service

SCHEMA = Schema(
    (
        Column("id", "integer"),
        Column("name", "string"),
        Column("score", "float"),
        Column("day", "date"),
        Column("at", "datetime"),
        Column("at_tz", "datetime_tz"),
        Column("ok", "boolean"),
        Column("blob", "binary"),
        Column("odd name", "string"),
        Column("and", "integer"),
    )
)
UTC = dt.UTC
FRAME = pl.DataFrame(
    {
        "id": [1, 2, 3, None, 5],
        "name": ["alpha", "bob", None, "al'x", "Bob"],
        "score": [1.5, None, 3.0, -2.0, 10.0],
        "day": [
            dt.date(2020, 1, 1),
            dt.date(2021, 6, 1),
            None,
            dt.date(2019, 5, 5),
            dt.date(2020, 1, 2),
        ],
        "at": [
            dt.datetime(2020, 1, 1, 12),
            None,
            dt.datetime(2020, 1, 2),
            dt.datetime(2019, 1, 1),
            dt.datetime(2020, 1, 1),
        ],
        "at_tz": [
            dt.datetime(2020, 1, 1, 12, tzinfo=UTC),
            None,
            dt.datetime(2020, 1, 2, tzinfo=UTC),
            dt.datetime(2019, 1, 1, tzinfo=UTC),
            dt.datetime(2020, 1, 1, 10, tzinfo=UTC),
        ],
        "ok": [True, False, None, True, False],
        "blob": [b"x", None, b"y", b"z", None],
        "odd name": ["p", "q", "r", "s", "t"],
        "and": [0, 1, 0, 1, 0],
    },
    schema={
        "id": pl.Int64,
        "name": pl.String,
        "score": pl.Float64,
        "day": pl.Date,
        "at": pl.Datetime("us"),
        "at_tz": pl.Datetime("us", "UTC"),
        "ok": pl.Boolean,
        "blob": pl.Binary,
        "odd name": pl.String,
        "and": pl.Int64,
    },
)


def rows(text: str) -> list[int]:
    expr = data_service.parse_filter(text, SCHEMA)
    return FRAME.with_row_index("i").filter(expr).get_column("i").to_list()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id = 2", [1]),
        ("id == 2", [1]),
        ("id != 2", [0, 2, 4]),  # null is unknown, never selected
        ("id <> 2", [0, 2, 4]),
        ("id < 3", [0, 1]),
        ("id <= 3", [0, 1, 2]),
        ("id > 3", [4]),
        ("id >= 3", [2, 4]),
        ("id > 2.5", [2, 4]),
        ("score > -1.5", [0, 2, 4]),
        ("score >= 1e1", [4]),
        ("score < .5e1", [0, 2, 3]),
        ("id in (1, 5, 99)", [0, 4]),
        ("id not in (1, 5)", [1, 2]),
        ("name in ('bob', 'Bob')", [1, 4]),
        ("name is null", [2]),
        ("name IS NOT NULL", [0, 1, 3, 4]),
        ("blob is null", [1, 4]),
        ("name contains 'o'", [1, 4]),
        ("name contains '.'", []),  # literal, not a pattern
        ("name starts_with 'al'", [0, 3]),
        ("name = 'al\\'x'", [3]),
        ('name = "al\'x"', [3]),
        ("name = 'bob'", [1]),  # case-sensitive
        ("ok = true", [0, 3]),
        ("ok != TRUE", [1, 4]),
        ("day >= '2020-01-01'", [0, 1, 4]),
        ("day = '2020-01-02'", [4]),
        ("at > '2020-01-01'", [0, 2]),
        ("at >= '2020-01-01 12:00'", [0, 2]),
        ("at = '2020-01-01T12:00:00.000000'", [0]),
        ("at_tz = '2020-01-01T12:00Z'", [0]),
        ("at_tz = '2020-01-01T14:00+02:00'", [0]),
        ("at_tz = '2020-01-01T12:00'", [0]),  # a naive literal means UTC
        ("`odd name` = 'q'", [1]),
        ("\"odd name\" = 'q'", [1]),
        ("`and` = 1", [1, 3]),
        ("score = 'NaN'", []),
        ("score < 'Infinity'", [0, 2, 3, 4]),
    ],
)
def test_operators(text: str, expected: list[int]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # not binds tighter than and, and tighter than or
        ("id = 1 or id = 2 and name = 'x'", [0]),
        ("(id = 1 or id = 2) and name = 'bob'", [1]),
        ("not id = 1 and id < 3", [1]),
        ("not (id = 1 and id < 3)", [1, 2, 4]),
        ("not not id = 1", [0]),
        ("id = 1 or id = 2 or id = 3 and ok = true", [0, 1]),
        ("((((id = 5))))", [4]),
        # three-valued logic: unknown stays unknown under not
        ("not (name = 'bob')", [0, 3, 4]),
        ("name = 'bob' or id = 3", [1, 2]),
        ("not (id in (1, 2))", [2, 4]),
        ("  id=1  ", [0]),
    ],
)
def test_precedence_and_nulls(text: str, expected: list[int]) -> None:
    assert rows(text) == expected


@pytest.mark.parametrize(
    ("text", "code", "position", "says"),
    [
        ("", "invalid_filter", 0, "expected a column name"),
        ("id >", "invalid_filter", 4, "expected a value after '>'"),
        ("id > 'abc'", "invalid_filter", 5, "expected a number"),
        ("nope = 1", "unknown_column", 0, "unknown column 'nope'"),
        ("id = 1 and nope = 1", "unknown_column", 11, "unknown column"),
        ("name contains 1", "invalid_filter", 14, "expected quoted text"),
        ("score contains 'a'", "invalid_filter", 6, "needs a text column"),
        ("id = null", "invalid_filter", 5, "is null"),
        ("(id = 1", "invalid_filter", 7, "expected ')'"),
        ("id = 1)", "invalid_filter", 6, "unmatched ')'"),
        ("id = 1 name = 'x'", "invalid_filter", 7, "expected 'and', 'or' or the end"),
        ("day > '2020-13-01'", "invalid_filter", 6, "expected a date"),
        ("day > 20200101", "invalid_filter", 6, "expected quoted text"),
        ("at > '2020-01-01Z'", "invalid_filter", 5, "without zone"),
        ("'id' = 1", "invalid_filter", 0, "backticks or double quotes"),
        ("and = 1", "invalid_filter", 0, "keyword"),
        ("name = 'abc", "invalid_filter", 7, "unterminated"),
        ("name = 'a\\q'", "invalid_filter", 9, "unknown escape"),
        ("id ~ 1", "invalid_filter", 3, "unexpected character"),
        ("id in ()", "invalid_filter", 7, "expected a value"),
        ("id in (1 2)", "invalid_filter", 9, "',' or ')'"),
        ("ok > true", "invalid_filter", 3, "only = and !="),
        ("ok = 1", "invalid_filter", 5, "expected true or false"),
        ("name = 1", "invalid_filter", 7, "expected quoted text"),
        ("blob = 'x'", "invalid_filter", 7, "is null"),
        ("id = 99999999999999999999", "invalid_filter", 5, "64-bit"),
        ("id is 1", "invalid_filter", 6, "'null'"),
        ("id not 1", "invalid_filter", 7, "expected 'in'"),
        ("id = other", "invalid_filter", 5, "comparing two columns"),
        ("id = 1AND id = 2", "invalid_filter", 5, "malformed number"),
        ("id", "invalid_filter", 2, "expected an operator"),
        ("not", "invalid_filter", 3, "expected a column name"),
        ("(" * 100 + "id = 1" + ")" * 100, "invalid_filter", 64, "deeper"),
    ],
)
def test_errors_point_at_the_offending_position(
    text: str, code: str, position: int, says: str
) -> None:
    with pytest.raises(BadRequest) as e:
        data_service.parse_filter(text, SCHEMA)
    assert e.value.status == 400
    assert e.value.code == code
    assert e.value.extra["position"] == position, e.value.detail
    assert says in e.value.detail
    problem = e.value.to_problem()
    assert problem["status"] == 400 and problem["position"] == position


def test_long_filters_are_refused() -> None:
    with pytest.raises(BadRequest) as e:
        data_service.parse_filter("id = 1 or " * 1000 + "id = 2", SCHEMA)
    assert e.value.code == "invalid_filter"


def test_literals_are_never_evaluated() -> None:
    # text that would mean something to Python or SQL is just text here
    assert rows('name = \'__import__("os").system("true")\'') == []
    assert rows("name = 'x\\' or 1=1 --'") == []
    with pytest.raises(BadRequest):
        data_service.parse_filter("id = 1; drop table commit", SCHEMA)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id", [("id", False)]),
        ("-score,name", [("score", True), ("name", False)]),
        ("score:desc, name:ASC", [("score", True), ("name", False)]),
        ('-`odd name`,"and":desc', [("odd name", True), ("and", True)]),
    ],
)
def test_sort(text: str, expected: list[tuple[str, bool]]) -> None:
    assert data_service.parse_sort(text, SCHEMA) == expected


@pytest.mark.parametrize(
    ("text", "code", "position"),
    [
        ("", "invalid_sort", 0),
        ("-", "invalid_sort", 1),
        ("id,", "invalid_sort", 3),
        ("id:up", "invalid_sort", 3),
        ("nope", "unknown_column", 0),
        ("id,-nope", "unknown_column", 4),
        ("id,id", "invalid_sort", 3),
        ("-id:desc", "invalid_sort", 4),
        ("id name", "invalid_sort", 3),
    ],
)
def test_sort_errors(text: str, code: str, position: int) -> None:
    with pytest.raises(BadRequest) as e:
        data_service.parse_sort(text, SCHEMA)
    assert (e.value.code, e.value.extra["position"]) == (code, position)
