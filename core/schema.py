"""Logical column types and their Arrow storage.

A schema is an ordered list of columns with a name, a logical type and
nullability. Logical types are what users see in the API; each has exactly
one Arrow storage type in chunks and one type tag in the row encoding.

Most types are a bare name (``integer``, ``time`` …). Exact and nested types
carry parameters, written in one canonical string inside the service:

- ``decimal(P,S)``: precision 1–38 and scale 0–P, stored as ``decimal128``;
- ``list<T>``: a list of values of type ``T``, stored as ``large_list``;
- ``struct<"a":T,"b":U>``: named fields (JSON-quoted names), stored as ``struct``.

In JSON (schemas, the API) a column spells its parameters out:
``{"type": "decimal", "precision": 12, "scale": 2}``,
``{"type": "list", "item": {"type": "integer"}}``,
``{"type": "struct", "fields": [{"name": "a", "type": "integer"}]}``; a bare
type keeps the form it always had, so stored schemas keep their ids.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import UnknownType

# logical type -> (Arrow storage type, row-encoding tag)
_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "integer": (pa.int64(), "i"),
    "float": (pa.float64(), "f"),
    "boolean": (pa.bool_(), "b"),
    "string": (pa.large_string(), "s"),
    "binary": (pa.large_binary(), "x"),
    "date": (pa.date32(), "d"),
    "datetime": (pa.timestamp("us"), "t"),
    "datetime_tz": (pa.timestamp("us", tz="UTC"), "z"),
    "time": (pa.time64("us"), "h"),
    "duration": (pa.duration("us"), "u"),
}
# parameterised kinds -> row-encoding tag
_PARAM_TAGS = {"decimal": "n", "list": "l", "struct": "r"}
LOGICAL_TYPES = (*_TYPES, *_PARAM_TAGS)
MAX_DECIMAL_PRECISION = 38
MAX_NESTING = 8
MAX_TYPE_TEXT = 10_000


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A parsed logical type."""

    kind: str
    precision: int = 0
    scale: int = 0
    item: TypeSpec | None = None
    fields: tuple[tuple[str, TypeSpec], ...] = ()

    def text(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "list":
            assert self.item is not None
            return f"list<{self.item.text()}>"
        if self.kind == "struct":
            inner = ",".join(
                f"{json.dumps(n, ensure_ascii=False)}:{t.text()}" for n, t in self.fields
            )
            return f"struct<{inner}>"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "decimal":
            out |= {"precision": self.precision, "scale": self.scale}
        elif self.kind == "list":
            assert self.item is not None
            out["item"] = self.item.to_json()
        elif self.kind == "struct":
            out["fields"] = [{"name": n, **t.to_json()} for n, t in self.fields]
        return out

    def arrow(self) -> pa.DataType:
        if self.kind == "decimal":
            return pa.decimal128(self.precision, self.scale)
        if self.kind == "list":
            assert self.item is not None
            return pa.large_list(self.item.arrow())
        if self.kind == "struct":
            return pa.struct([pa.field(n, t.arrow()) for n, t in self.fields])
        return _TYPES[self.kind][0]

    @property
    def tag(self) -> str:
        return _PARAM_TAGS.get(self.kind) or _TYPES[self.kind][1]


def _bad(text: str, why: str = "") -> UnknownType:
    return UnknownType(f"unknown column type {text!r}{': ' + why if why else ''}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def take(self, s: str) -> bool:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def need(self, s: str) -> None:
        if not self.take(s):
            raise _bad(self.text, f"expected {s!r} at {self.pos}")

    def number(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        if start == self.pos or self.pos - start > 3:
            raise _bad(self.text, f"expected a number at {start}")
        return int(self.text[start : self.pos])

    def name(self) -> str:
        if not self.text.startswith('"', self.pos):
            raise _bad(self.text, f"expected a quoted field name at {self.pos}")
        try:
            value, end = json.decoder.scanstring(self.text, self.pos + 1)  # type: ignore[attr-defined]
            value.encode()  # a lone surrogate (\ud800) is no UTF-8 name
        except (ValueError, UnicodeEncodeError):
            raise _bad(self.text, f"expected a quoted field name at {self.pos}") from None
        if not value:
            raise _bad(self.text, "a field name must be a non-empty string")
        self.pos = end
        return value

    def type(self, depth: int = 0) -> TypeSpec:
        if depth > MAX_NESTING:
            raise _bad(self.text, f"nested more than {MAX_NESTING} levels")
        if self.take("decimal("):
            p = self.number()
            self.need(",")
            s = self.number()
            self.need(")")
            return decimal_spec(p, s, self.text)
        if self.take("list<"):
            item = self.type(depth + 1)
            self.need(">")
            return TypeSpec("list", item=item)
        if self.take("struct<"):
            fields: list[tuple[str, TypeSpec]] = []
            while True:
                n = self.name()
                self.need(":")
                fields.append((n, self.type(depth + 1)))
                if not self.take(","):
                    break
            self.need(">")
            return struct_spec(fields, self.text)
        for kind in sorted(_TYPES, key=len, reverse=True):
            if self.take(kind):
                return TypeSpec(kind)
        raise _bad(self.text)


def decimal_spec(precision: int, scale: int, text: str = "decimal") -> TypeSpec:
    if not 1 <= precision <= MAX_DECIMAL_PRECISION or not 0 <= scale <= precision:
        raise _bad(text, f"precision must be 1 to {MAX_DECIMAL_PRECISION}, scale 0 to precision")
    return TypeSpec("decimal", precision=precision, scale=scale)


def struct_spec(fields: list[tuple[str, TypeSpec]], text: str = "struct") -> TypeSpec:
    names = [n for n, _ in fields]
    if not fields or len(set(names)) != len(names):
        raise _bad(text, "a struct needs fields with distinct names")
    return TypeSpec("struct", fields=tuple(fields))


@functools.lru_cache(maxsize=4096)
def parse_type(text: str) -> TypeSpec:
    """The ``TypeSpec`` of a logical type's canonical string (``UnknownType``
    for anything else)."""
    if not isinstance(text, str):
        raise _bad(str(text)[:200])
    if text in _TYPES:
        return TypeSpec(text)
    if len(text) > MAX_TYPE_TEXT:
        raise _bad(text[:200] + "…", f"longer than {MAX_TYPE_TEXT} characters")
    parser = _Parser(text)
    spec = parser.type()
    if parser.pos != len(text):
        raise _bad(text, f"unexpected text at {parser.pos}")
    return spec


def is_type(text: str) -> bool:
    """Whether ``text`` is a logical type's canonical string."""
    try:
        parse_type(text)
    except UnknownType:
        return False
    return True


def spec_from_json(d: Any, depth: int = 0) -> TypeSpec:
    """A type from its JSON form (``{"type": …, …}``) or its canonical string."""
    if isinstance(d, str):
        spec = parse_type(d)
        if depth + _depth(spec) > MAX_NESTING:
            raise _bad(d[:200], f"nested more than {MAX_NESTING} levels")
        return spec
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise _bad(json.dumps(d, default=str)[:200], "expected a type name or object")
    if depth > MAX_NESTING:
        raise _bad("…", f"nested more than {MAX_NESTING} levels")
    kind = d["type"]
    if kind == "decimal":
        p, s = d.get("precision"), d.get("scale", 0)
        if not isinstance(p, int) or not isinstance(s, int) or type(p) is bool or type(s) is bool:
            raise _bad("decimal", "precision and scale must be integers")
        return decimal_spec(p, s)
    if kind == "list":
        return TypeSpec("list", item=spec_from_json(d.get("item"), depth + 1))
    if kind == "struct":
        fields = d.get("fields")
        if not isinstance(fields, list):
            raise _bad("struct", "fields must be a list")
        out = []
        for f in fields:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
                raise _bad("struct", "each field needs a name")
            out.append((f["name"], spec_from_json(f, depth + 1)))
        return struct_spec(out)
    return parse_type(kind)


def _depth(spec: TypeSpec) -> int:
    if spec.item is not None:
        return 1 + _depth(spec.item)
    return 1 + max((_depth(t) for _, t in spec.fields), default=-1)


def kind_of(logical: str) -> str:
    """The bare kind of a logical type (``decimal`` for ``decimal(12,2)``)."""
    return logical if logical in _TYPES else parse_type(logical).kind


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool = True

    def to_json(self) -> dict[str, Any]:
        if self.type in _TYPES:
            return {"name": self.name, "type": self.type, "nullable": self.nullable}
        return {"name": self.name, **parse_type(self.type).to_json(), "nullable": self.nullable}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Column:
        t = d["type"]
        if t not in _TYPES:
            t = spec_from_json(d).text()
        return cls(name=d["name"], type=t, nullable=bool(d.get("nullable", True)))


def arrow_type(logical: str) -> pa.DataType:
    try:
        return _TYPES[logical][0]
    except KeyError:
        return parse_type(logical).arrow()


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=c.nullable) for c in columns])


def arrow_for_hashing(arr: pa.Array, logical: str) -> tuple[pa.Array, int]:
    """The array in its storage type and the tag the row encoding uses."""
    spec = parse_type(logical)
    storage = spec.arrow()
    if arr.type != storage:
        arr = pc.cast(arr, storage)
    return arr, ord(spec.tag)


def logical_of_arrow(t: pa.DataType, depth: int = 0) -> str | None:
    """The logical type an Arrow type's values keep, or ``None`` where DSA has
    none (maps, intervals, unions, null; decimals beyond 38 digits or with a
    negative scale; nesting deeper than ``MAX_NESTING``)."""
    if pa.types.is_dictionary(t):
        return logical_of_arrow(t.value_type, depth)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime_tz" if t.tz else "datetime"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or t == pa.string_view():
        return "string"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or t == pa.binary_view()
    ):
        return "binary"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_duration(t):
        return "duration"
    if pa.types.is_decimal(t):
        ok = 0 <= t.scale <= t.precision <= MAX_DECIMAL_PRECISION
        return f"decimal({t.precision},{t.scale})" if ok else None
    if depth >= MAX_NESTING:
        return None
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    ):
        item = logical_of_arrow(t.value_type, depth + 1)
        return None if item is None else f"list<{item}>"
    if pa.types.is_struct(t):
        fields = []
        for f in t:
            ft = logical_of_arrow(f.type, depth + 1)
            if ft is None or not f.name:
                return None
            fields.append((f.name, parse_type(ft)))
        if not fields or len({n for n, _ in fields}) != len(fields):
            return None
        return TypeSpec("struct", fields=tuple(fields)).text()
    return None
