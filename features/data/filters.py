"""Row filters and sort orders: a small grammar parsed into polars expressions.

The grammar (EBNF in docs/api.md, "Filters")::

    filter     = or_expr
    or_expr    = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | "(" or_expr ")" | predicate
    predicate  = column ( op value | ["not"] "in" "(" value { "," value } ")"
                        | "is" ["not"] "null" | "contains" string
                        | "starts_with" string )

Why a hand-written tokenizer and recursive-descent parser rather than a
library (lark, pyparsing, sqlglot, or polars' own SQL context): the grammar is
a dozen productions and will stay small; a hand-written parser knows the
table's schema while it parses, so every error names the exact character
offset and what was expected there ("expected a value after '>=' at 14")
and type errors point at the offending literal rather than at a generic
"cannot compare"; it depends on nothing and is ~300 lines anyone can read.
A SQL engine would accept far more than we want to promise (functions,
sub-queries, casts) and its errors speak its own dialect. Most importantly,
nothing the user writes is ever evaluated or spliced into a query string:
the parser builds ``polars.Expr`` objects from tokens, literals are coerced
to the column's logical type here, and an unknown column or a mistyped
literal is refused before anything runs.

Null semantics are SQL's three-valued logic: a comparison with a null value
is unknown, ``not unknown`` is unknown, and a row passes only when the whole
filter is true. ``x = null`` is refused (write ``x is null``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, NoReturn

import polars as pl

from core.errors import BadRequest
from core.objects import Schema
from core.schema import Column, kind_of, parse_type
from features.data.dtypes import exact_literal, fits, polars_type
from features.data.errors import InvalidFilter, InvalidSort, UnknownFilterColumn
from features.data.zones import zone_of

MAX_FILTER_CHARS = 8192
MAX_DEPTH = 64
MAX_SORT_COLUMNS = 16

KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "null", "true", "false", "contains", "starts_with"}
)
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"-?\d+")
_OPERATOR = re.compile(r"<=|>=|!=|<>|==|=|<|>")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?"
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word, quoted, backtick, number, op, "(", ")", ",", ":", "-", end
    text: str  # the value: the word, the unescaped string, the operator
    pos: int  # 0-based offset of the token's first character
    quote: str = ""  # the quote character of a quoted token

    @property
    def keyword(self) -> str | None:
        low = self.text.lower()
        return low if self.kind == "word" and low in KEYWORDS else None

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the filter"
        if self.kind in ("quoted", "backtick"):
            return f"{self.quote}{self.text}{self.quote}"
        return repr(self.text)


def _fail(
    pos: int, message: str, *, error: type[BadRequest] = InvalidFilter, **extra: Any
) -> NoReturn:
    raise error(f"{message} (at position {pos})", position=pos, **extra)


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; refuses unknown characters and unterminated
    quotes with their position."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "(),:":
            out.append(Token(c, c, i))
            i += 1
        elif c in "'\"`":
            value, j = _quoted(text, i)
            out.append(Token("backtick" if c == "`" else "quoted", value, i, c))
            i = j
        elif c.isdigit() or (
            c in "-." and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == ".")
        ):
            m = _NUMBER.match(text, i)
            if m is None or (m.end() < n and (text[m.end()].isalnum() or text[m.end()] == "_")):
                end = m.end() if m else i + 1
                _fail(i, f"malformed number {text[i : end + 1]!r}")
            out.append(Token("number", m.group(), i))
            i = m.end()
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(Token("word", text[i:j], i))
            i = j
        elif c == "-":  # a minus not starting a number: sort's "-name"
            out.append(Token("-", c, i))
            i += 1
        else:
            m = _OPERATOR.match(text, i)
            if m is None:
                _fail(i, f"unexpected character {c!r}")
            op = {"==": "=", "<>": "!="}.get(m.group(), m.group())
            out.append(Token("op", op, i))
            i = m.end()
    out.append(Token("end", "", n))
    return out


def _quoted(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    parts: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return "".join(parts), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = text[i + 1]
            if e == "u":
                hexa = text[i + 2 : i + 6]
                if not re.fullmatch(r"[0-9a-fA-F]{4}", hexa):
                    _fail(i, "expected four hex digits after \\u")
                parts.append(chr(int(hexa, 16)))
                i += 6
                continue
            if e not in _ESCAPES:
                _fail(i, f"unknown escape \\{e} (use \\\\, \\{quote}, \\n, \\t, \\r or \\uXXXX)")
            parts.append(_ESCAPES[e])
            i += 2
            continue
        parts.append(c)
        i += 1
    _fail(start, f"unterminated {quote}-quoted text; expected a closing {quote}")


class _Parser:
    def __init__(self, text: str, schema: Schema) -> None:
        if len(text) > MAX_FILTER_CHARS:
            _fail(MAX_FILTER_CHARS, f"the filter is longer than {MAX_FILTER_CHARS} characters")
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.columns = {c.name: c for c in schema.columns}
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def at_keyword(self, *words: str) -> bool:
        return self.tok.keyword in words

    def expect_keyword(self, word: str, what: str) -> Token:
        if not self.at_keyword(word):
            _fail(self.tok.pos, f"expected {what}, found {self.tok.describe()}")
        return self.advance()

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            _fail(self.tok.pos, f"expected {what}, found {self.tok.describe()}")
        return self.advance()

    # filter = or_expr, then the end
    def parse(self) -> Cond:
        cond = self.or_expr()
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                _fail(self.tok.pos, "unmatched ')'")
            _fail(self.tok.pos, f"expected 'and', 'or' or the end, found {self.tok.describe()}")
        return cond

    def or_expr(self) -> Cond:
        expr, zone = self.and_expr()
        while self.at_keyword("or"):
            self.advance()
            e, z = self.and_expr()
            expr = expr | e
            zone = None if zone is None or z is None else zone | z
        return expr, zone

    def and_expr(self) -> Cond:
        expr, zone = self.not_expr()
        while self.at_keyword("and"):
            self.advance()
            e, z = self.not_expr()
            expr = expr & e
            zone = z if zone is None else zone if z is None else zone & z
        return expr, zone

    def not_expr(self) -> Cond:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            _fail(self.tok.pos, f"the filter nests deeper than {MAX_DEPTH} levels")
        try:
            if self.at_keyword("not"):
                self.advance()
                return ~self.not_expr()[0], None  # a "maybe" negated says nothing
            if self.tok.kind == "(":
                self.advance()
                cond = self.or_expr()
                self.expect(")", "')'")
                return cond
            return self.predicate()
        finally:
            self.depth -= 1

    def column(self) -> tuple[Column, Token]:
        t = self.tok
        bare = t.kind == "word" and t.keyword is None
        if bare or (t.kind in ("quoted", "backtick") and t.quote != "'"):
            self.advance()
            col = self.columns.get(t.text)
            if col is None:
                _fail(t.pos, f"unknown column {t.text!r}", error=UnknownFilterColumn, column=t.text)
            return col, t
        hint = ""
        if t.keyword is not None:
            hint = f" (quote a column named like a keyword with backticks: `{t.text}`)"
        elif t.kind == "quoted":
            hint = (
                " (quote column names with backticks or double quotes; 'single quotes' make text)"
            )
        _fail(t.pos, f"expected a column name, 'not' or '(', found {t.describe()}{hint}")

    def predicate(self) -> Cond:
        col, ctok = self.column()
        c = pl.col(col.name)
        t = self.tok
        if t.kind == "op":
            if t.text not in ("=", "!=") and kind_of(col.type) in ("boolean", "binary"):
                _fail(t.pos, f"{col.type} column {col.name!r} takes only = and !=")
            self.advance()
            value = self.literal(col, t.text)
            return _compare(c, t.text, value), zone_of(col, t.text, [value])
        return self._other(col, ctok), None

    def _other(self, col: Column, ctok: Token) -> pl.Expr:
        c = pl.col(col.name)
        t = self.tok
        if self.at_keyword("is"):
            self.advance()
            negate = self.at_keyword("not")
            if negate:
                self.advance()
            self.expect_keyword("null", "'null' after 'is'" + (" not" if negate else ""))
            return c.is_not_null() if negate else c.is_null()
        negate_in = False
        if self.at_keyword("not"):
            self.advance()
            if not self.at_keyword("in"):
                _fail(self.tok.pos, f"expected 'in' after 'not', found {self.tok.describe()}")
            negate_in = True
        if self.at_keyword("in"):
            self.advance()
            self.expect("(", "'(' after 'in'")
            values = [self.literal(col, "in")]
            while self.tok.kind == ",":
                self.advance()
                values.append(self.literal(col, "in"))
            self.expect(")", "',' or ')' in the list of values")
            dtype = polars_type(col.type)
            if kind_of(col.type) == "decimal":  # a value the column cannot hold matches nothing
                values = [v for v in values if fits(v, parse_type(col.type))]
            test = c.is_in(pl.lit(pl.Series(values=values, dtype=dtype)).implode())
            expr = pl.when(c.is_not_null()).then(test)  # null stays unknown
            return ~expr if negate_in else expr
        if self.at_keyword("contains", "starts_with"):
            op = self.advance().text.lower()
            if col.type != "string":
                _fail(t.pos, f"{op} needs a text column; {col.name!r} is {col.type}")
            v = self.tok
            if v.kind != "quoted":
                _fail(v.pos, f"expected quoted text after {op}, found {v.describe()}")
            self.advance()
            if op == "contains":
                return c.str.contains(v.text, literal=True)
            return c.str.starts_with(pl.lit(v.text, dtype=pl.String))
        _fail(
            t.pos,
            f"expected an operator after column {ctok.text!r} (=, !=, <, <=, >, >=, in, not in, "
            f"is null, is not null, contains, starts_with), found {t.describe()}",
        )

    def literal(self, col: Column, op: str) -> Any:
        """The next token as a value of ``col``'s type (a 400 at the token if it is not)."""
        t = self.tok
        if t.kind in ("end", ")", ",", "op") or t.keyword in ("and", "or", "not", "in", "is"):
            _fail(t.pos, f"expected a value after {op!r}, found {t.describe()}")
        self.advance()
        if t.keyword == "null":
            hint = "x is null" if op in ("=", "in") else "x is not null"
            _fail(t.pos, f"null is never equal to anything: write {hint!r}")
        if t.kind == "backtick" or (t.kind == "word" and t.keyword is None):
            _fail(
                t.pos,
                f"expected a value, found {t.describe()} (comparing two columns is not supported; "
                "quote text with single quotes)",
            )
        return _coerce(t, col)


# a filter's expression, and its test of a chunk's extremes (``parse_filter_zones``)
Cond = tuple[pl.Expr, pl.Expr | None]


def _compare(c: pl.Expr, op: str, value: Any) -> pl.Expr:
    v = pl.lit(value)
    if op == "=":
        return c == v
    if op == "!=":
        return c != v
    if op == "<":
        return c < v
    if op == "<=":
        return c <= v
    if op == ">":
        return c > v
    return c >= v


def _coerce(t: Token, col: Column) -> Any:
    kind = kind_of(col.type)
    where = f"column {col.name!r} is {col.type}"
    if kind in ("decimal", "time", "duration"):
        return _exact(t, col, where)
    if kind in ("binary", "list", "struct"):
        _fail(t.pos, f"{where}: it can only be tested with 'is null' / 'is not null'")
    if kind == "boolean":
        if t.keyword in ("true", "false"):
            return t.keyword == "true"
        _fail(t.pos, f"{where}: expected true or false, found {t.describe()}")
    if kind in ("integer", "float"):
        if t.kind == "quoted" and kind == "float":
            special = {"nan": float("nan"), "infinity": float("inf"), "-infinity": float("-inf")}
            if t.text.lower() in special:
                return special[t.text.lower()]
        if t.kind != "number":
            _fail(t.pos, f"{where}: expected a number (without quotes), found {t.describe()}")
        if kind == "integer" and _INT.fullmatch(t.text):
            v = int(t.text)
            if not _INT64[0] <= v <= _INT64[1]:
                _fail(t.pos, f"{where}: {t.text} is outside the 64-bit integer range")
            return v
        return float(t.text)
    if t.kind != "quoted":
        _fail(t.pos, f"{where}: expected quoted text, found {t.describe()}")
    if kind == "string":
        return t.text
    if kind == "date":
        if _DATE.fullmatch(t.text):
            try:
                return dt.date.fromisoformat(t.text)
            except ValueError:
                pass
        _fail(t.pos, f"{where}: expected a date 'YYYY-MM-DD', found {t.describe()}")
    return _datetime(t, col)


def _exact(t: Token, col: Column, where: str) -> Any:
    """A decimal, time or duration literal (``dtypes.exact_literal``)."""
    try:
        return exact_literal(t.text, t.kind, parse_type(col.type))
    except ValueError as exc:
        _fail(t.pos, f"{where}: {exc}, found {t.describe()}")


def _datetime(t: Token, col: Column) -> dt.datetime:
    m = _DATETIME.fullmatch(t.text)
    shape = "'YYYY-MM-DD', 'YYYY-MM-DDTHH:MM[:SS[.ffffff]]'"
    if col.type == "datetime_tz":
        shape += " with an optional Z or ±HH:MM"
    if m is None:
        _fail(t.pos, f"column {col.name!r} is {col.type}: expected {shape}, found {t.describe()}")
    day, time, zone = m.groups()
    if zone and col.type == "datetime":
        _fail(
            t.pos,
            f"column {col.name!r} is a datetime without zone: drop the offset from {t.describe()}",
        )
    try:
        value = dt.datetime.fromisoformat(f"{day}T{time or '00:00'}")
        if zone:
            z = "+00:00" if zone in ("Z", "z") else zone
            if ":" not in z:
                z = z[:3] + ":" + z[3:]
            off = dt.datetime.fromisoformat(f"{day}T00:00{z}").utcoffset()
            value = (value - off).replace(tzinfo=dt.UTC) if off is not None else value
    except ValueError:
        _fail(t.pos, f"column {col.name!r} is {col.type}: {t.describe()} is not a real date/time")
    if col.type == "datetime_tz" and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # a naive literal means UTC
    return value


def parse_filter(text: str, schema: Schema) -> pl.Expr:
    """``text`` as a boolean polars expression over ``schema``'s columns.

    Raises ``InvalidFilter`` (400) with ``position`` (0-based character
    offset) for syntax and type errors, or ``UnknownFilterColumn`` with
    ``position`` and ``column``."""
    return _Parser(text, schema).parse()[0]


def parse_filter_zones(text: str, schema: Schema) -> tuple[pl.Expr, pl.Expr | None]:
    """``parse_filter``'s expression, and what it asks of a chunk's column
    extremes: an expression over columns ``zone_min(c)``/``zone_max(c)``,
    false only for chunks that cannot hold a passing row (None: any chunk
    may). Comparisons of integer, date, time, text and decimal columns
    with a value say something; ``and``/``or`` combine them; anything else
    (floats, which may hold NaN, ``!=``, ``not``, nulls, text search) may
    match anywhere."""
    return _Parser(text, schema).parse()


def parse_sort(text: str, schema: Schema) -> list[tuple[str, bool]]:
    """``sort`` as ``[(column, descending), …]``. Both spellings, mixable:
    ``-price,name`` and ``price:desc,name:asc``; names may be quoted with
    backticks or double quotes. Errors as for ``parse_filter``, with
    ``InvalidSort`` for syntax errors (the tokenizer's too)."""
    try:
        return _parse_sort(text, schema)
    except InvalidFilter as e:  # from the tokenizer, shared with filters
        raise InvalidSort(e.detail, **e.extra) from None


def _parse_sort(text: str, schema: Schema) -> list[tuple[str, bool]]:
    tokens = tokenize(text)
    columns = set(schema.names)
    out: list[tuple[str, bool]] = []
    i = 0
    while True:
        desc = tokens[i].kind == "-"
        if desc:
            i += 1
        t = tokens[i]
        if t.kind not in ("word", "quoted", "backtick") or t.quote == "'":
            _fail(t.pos, f"expected a column name, found {t.describe()}")
        if t.text not in columns:
            _fail(t.pos, f"unknown column {t.text!r}", error=UnknownFilterColumn, column=t.text)
        i += 1
        if tokens[i].kind == ":":
            d = tokens[i + 1]
            word = d.text.lower() if d.kind == "word" else ""
            if word not in ("asc", "desc"):
                _fail(d.pos, f"expected asc or desc after ':', found {d.describe()}")
            if desc:
                _fail(d.pos, "give the direction once: '-name' or 'name:desc'")
            desc = word == "desc"
            i += 2
        if any(name == t.text for name, _ in out):
            _fail(t.pos, f"column {t.text!r} appears twice in sort")
        out.append((t.text, desc))
        if len(out) > MAX_SORT_COLUMNS:
            _fail(t.pos, f"sort takes at most {MAX_SORT_COLUMNS} columns")
        t = tokens[i]
        if t.kind == "end":
            return out
        if t.kind != ",":
            _fail(t.pos, f"expected ',' or the end, found {t.describe()}")
        i += 1
