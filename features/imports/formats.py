"""Which files the importer takes and the options it understands.

Documented in docs/api.md ("Import options"). Unknown options are refused
(422) rather than ignored, so a typo never silently changes an import.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from core.errors import UnknownType
from core.schema import LOGICAL_TYPES, spec_from_json

SUPPORTED_EXTENSIONS = (
    ".csv",
    ".tsv",
    ".txt",
    ".parquet",
    ".xlsx",
    ".xlsm",
    ".xls",
    ".ods",
    ".zip",
    ".tar",
    ".tar.gz",
    "and CSV/TSV compressed: .gz, .bz2, .zst",
)
EXCEL = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
COMPRESSION_SUFFIXES = (".gz", ".gzip", ".bz2", ".zst", ".zstd")
OPTION_NAMES = (
    "delimiter",
    "header",
    "null_values",
    "skip_rows",
    "encoding",
    "column_types",
    "column_map",
    "sheet",
    "members",
)
ENCODINGS = (
    "utf-8",
    "utf8",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "latin-1",
    "latin1",
    "iso-8859-1",
    "cp1252",
    "windows-1252",
)


def detect_format(filename: str, options: dict[str, Any]) -> str | None:
    """The table format a file name says (a compression suffix is looked through;
    the worker recognises the compression itself by its magic bytes)."""
    path = PurePath(filename.lower())
    if path.suffix in (".zip", ".tar", ".tgz") or path.name.endswith((".tar.gz", ".tar.bz2")):
        return "archive"
    if path.suffix in COMPRESSION_SUFFIXES:
        path = PurePath(path.stem)
        if not path.suffix:  # data.gz: a compressed table of unnamed kind is taken as CSV
            return "csv"
    suffix = path.suffix
    if suffix in (".parquet", ".pq") and path == PurePath(filename.lower()):
        return "parquet"
    if suffix in EXCEL and path == PurePath(filename.lower()):
        return "excel"
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    return None


def table_name_from_file(filename: str) -> str:
    stem = PurePath(filename).name.split(".")[0].strip()
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "_" for c in stem)[:128]
    return cleaned or "data"


def table_name_from_sheet(sheet: str) -> str:
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "_-. " else "_" for c in sheet)
    return cleaned.strip()[:128] or "sheet"


def validate_options(options: dict[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for key in options:
        if key not in OPTION_NAMES:
            errors.append((key, f"unknown option; known: {', '.join(OPTION_NAMES)}"))
    d = options.get("delimiter")
    if d is not None and (not isinstance(d, str) or len(d) != 1 or d in '\r\n"'):
        errors.append(("delimiter", "must be one character (not a quote or newline)"))
    if "header" in options and not isinstance(options["header"], bool):
        errors.append(("header", "must be true or false"))
    nv = options.get("null_values")
    if nv is not None and (not isinstance(nv, list) or not all(isinstance(v, str) for v in nv)):
        errors.append(("null_values", "must be a list of strings"))
    sr = options.get("skip_rows")
    if sr is not None and (not isinstance(sr, int) or isinstance(sr, bool) or not 0 <= sr <= 10**6):
        errors.append(("skip_rows", "must be an integer from 0 to 1000000"))
    enc = options.get("encoding")
    if enc is not None and (not isinstance(enc, str) or enc.lower() not in ENCODINGS):
        errors.append(("encoding", f"must be one of {', '.join(ENCODINGS)}"))
    sheet = options.get("sheet")
    if sheet is not None and not (
        isinstance(sheet, str)
        or (isinstance(sheet, list) and all(isinstance(x, str) for x in sheet))
    ):
        errors.append(("sheet", "must be a sheet name or a list of sheet names"))
    members = options.get("members")
    if members is not None and not (
        isinstance(members, list) and all(isinstance(x, str) for x in members)
    ):
        errors.append(("members", "must be a list of member paths"))
    ct = options.get("column_types")
    if ct is not None:
        if not isinstance(ct, dict):
            errors.append(("column_types", "must be an object of column name to type"))
        else:
            for col, t in ct.items():
                try:
                    ct[col] = text = spec_from_json(t).text()  # objects become canonical text
                except UnknownType as exc:
                    text, why = "binary", exc.detail
                else:
                    why = ""
                if text == "binary":
                    allowed = ", ".join(x for x in LOGICAL_TYPES if x != "binary")
                    errors.append(
                        (f"column_types.{col}", why or f"must be one of {allowed} (decimal(P,S) …)")
                    )
    cm = options.get("column_map")
    if cm is not None:
        if not isinstance(cm, dict) or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and k
            and v.strip() == v
            and 0 < len(v) <= 200
            and v.isprintable()
            for k, v in cm.items()
        ):
            errors.append(
                ("column_map", "must be an object of file column name to table column name")
            )
        elif len(set(cm.values())) != len(cm):
            errors.append(("column_map", "maps two columns to one name"))
    return errors
