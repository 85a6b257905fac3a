"""ZIP and TAR uploads: each member a table.

Members are streamed out one at a time into the job's work directory under
generated names (``member-<n><suffix>``): a member's own path is used only to
name its table (its last component, without extension), so names like
``../../etc/passwd`` or absolute paths can never write outside the work
directory. Sizes declared in the archive are not trusted: the bytes actually
extracted are counted and the job fails once they pass the upload limit (a
zip bomb stops there). ``options.members`` chooses members by path.
Directories, links, devices and members of unsupported types are skipped.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from features.imports.errors import ImportFailed
from features.imports.formats import detect_format

_BLOCK = 1 << 20


def _members(path: Path) -> Iterator[tuple[str, Any]]:
    """(member path, opener) of every regular file, in archive order."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: zf.open(info)
        return
    with tarfile.open(path) as tf:
        for member in tf:
            if member.isfile():
                yield member.name, lambda m=member: tf.extractfile(m)


def extract(
    path: Path, work: Path, options: dict[str, Any], max_bytes: int
) -> list[tuple[str, Path, str]]:
    """The archive's importable members as (member path, extracted file, format)."""
    wanted = options.get("members")
    out: list[tuple[str, Path, str]] = []
    total = 0
    seen: set[str] = set()
    try:
        for n, (name, opener) in enumerate(_members(path)):
            seen.add(name)
            if wanted is not None and name not in wanted:
                continue
            fmt = detect_format(PurePosixPath(name).name, {})
            if fmt is None or fmt == "archive":
                continue
            suffix = "".join(PurePosixPath(name).suffixes[-2:])
            dest = work / f"member-{n}{suffix}"
            with opener() as src, open(dest, "wb") as dst:
                total = _copy(src, dst, total, max_bytes, name)
            out.append((name, dest, fmt))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ImportFailed(f"the archive is damaged: {exc}", code="corrupt_archive") from None
    if wanted is not None:
        missing = [m for m in wanted if m not in seen]
        if missing:
            raise ImportFailed(
                f"the archive has no member {', '.join(map(repr, missing))}",
                code="unknown_member",
                member=missing[0],
            )
    if not out:
        raise ImportFailed(
            "the archive holds no file DSA can import (CSV, TSV, Parquet, Excel)",
            code="empty_archive",
        )
    return out


def _copy(src: IO[bytes], dst: IO[bytes], total: int, max_bytes: int, name: str) -> int:
    while block := src.read(_BLOCK):
        total += len(block)
        if total > max_bytes:
            raise ImportFailed(
                f"the archive expands past the limit of {max_bytes} bytes (at member {name!r})",
                code="too_large",
                limit=max_bytes,
                member=name,
            )
        dst.write(block)
    return total
