"""Streaming multipart/form-data: the file part goes straight to disk.

Starlette's form parser spools files to the system temp directory and only
then lets us look at them; here every byte of the ``file`` part is written to
the DSA home's ``tmp/`` as it arrives, hashed with BLAKE3 on the way, and the
size limit stops the request the moment it is crossed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from core.errors import BadRequest, TooLarge

MAX_FIELD_BYTES = 1024 * 1024


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    size: int
    blake3: str


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: ReceivedFile | None = None


async def receive(
    stream: AsyncIterator[bytes], content_type: str, *, tmp_dir: Path, max_file_bytes: int
) -> ParsedForm:
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest(
            "send the file as multipart/form-data with a 'file' part", code="not_multipart"
        )
    tmp_dir.mkdir(parents=True, exist_ok=True)
    form = ParsedForm()
    state: dict[str, object] = {"headers": {}, "name": None, "filename": None}
    cur_field = bytearray()
    header_field = bytearray()
    header_value = bytearray()
    out: dict[str, object] = {"fh": None, "hasher": None, "size": 0, "path": None}
    too_large = False

    def on_part_begin() -> None:
        state["headers"] = {}
        state["name"] = None
        state["filename"] = None
        cur_field.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        _, disp = parse_options_header(headers.get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if b"filename" in disp and name == "file":
            if out["fh"] is not None:
                raise BadRequest("send exactly one 'file' part", code="multiple_files")
            state["filename"] = Path(disp[b"filename"].decode("utf-8", "replace")).name
            path = tmp_dir / f"upload-{uuid.uuid4().hex}"
            out["path"] = path
            out["fh"] = open(path, "wb")  # noqa: SIM115 - closed in finally
            out["hasher"] = blake3.blake3()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal too_large
        chunk = data[start:end]
        fh = out["fh"]
        if state["filename"] is not None and fh is not None:
            size = int(out["size"]) + len(chunk)  # type: ignore[call-overload]
            if size > max_file_bytes:
                too_large = True
                raise _Stop
            out["size"] = size
            fh.write(chunk)  # type: ignore[attr-defined]
            out["hasher"].update(chunk)  # type: ignore[attr-defined]
        else:
            if len(cur_field) + len(chunk) > MAX_FIELD_BYTES:
                raise BadRequest(f"form field {state['name']!r} is too long", code="field_too_long")
            cur_field.extend(chunk)

    def on_part_end() -> None:
        if state["filename"] is None and state["name"]:
            form.fields[str(state["name"])] = cur_field.decode("utf-8", "replace")
        elif state["filename"] is not None:
            fh = out["fh"]
            fh.close()  # type: ignore[attr-defined]
            form.file = ReceivedFile(
                path=out["path"],  # type: ignore[arg-type]
                filename=str(state["filename"]) or "upload",
                size=int(out["size"]),  # type: ignore[call-overload]
                blake3=out["hasher"].hexdigest(),  # type: ignore[attr-defined]
            )
            state["filename"] = None

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    ok = False
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
        ok = True
    except _Stop:
        pass
    except MultipartParseError as exc:
        raise BadRequest(f"the multipart body is malformed: {exc}", code="bad_multipart") from None
    finally:
        fh = out["fh"]
        if fh is not None and not fh.closed:  # type: ignore[attr-defined]
            fh.close()  # type: ignore[attr-defined]
        if not ok and out["path"] is not None:
            Path(out["path"]).unlink(missing_ok=True)  # type: ignore[arg-type]
    if too_large:
        raise TooLarge(
            f"the file is larger than the limit of {max_file_bytes} bytes",
            code="upload_too_large",
            limit=max_file_bytes,
        )
    return form


class _Stop(Exception):
    pass
