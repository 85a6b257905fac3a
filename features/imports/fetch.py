"""URL imports: download a file for an import, safely.

- Streamed to the job's work directory with the same size limit as uploads,
  hashed with BLAKE3 (and SHA-256 when the checksum asks for it) on the way.
- Retried with exponential backoff on timeouts, connection errors and 5xx;
  ``urls`` are mirrors tried in order; the URL that served the bytes is
  recorded in the commit's provenance.
- An optional ``checksum`` (``blake3:<hex>`` or ``sha256:<hex>``) is checked
  before anything is parsed; a mismatch fails the job naming both digests.
- Server-side request forgery: a user must not make the server read its own
  network. Every host is resolved first and refused unless all its addresses
  are public (not loopback, private, link-local, shared, reserved, multicast:
  that covers 169.254.169.254 and friends: ``core.addresses``). The connection
  then goes to the checked address itself (the Host header and TLS server name
  keep the original name), so a second DNS answer cannot swap it, and every
  redirect is checked the same way. ``DSA_URL_IMPORT_ALLOW_PRIVATE=true`` lifts the rule
  for deployments that import from their own network.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import blake3
import httpx

from core import addresses
from features.imports.errors import ImportFailed, UrlNotFound, UrlNotUsable, UrlRefused

MAX_REDIRECTS = 5


@dataclass
class Fetched:
    path: Path
    url: str
    filename: str
    size: int
    blake3: str
    sha256: str
    etag: str | None = None  # the server's validators, for the next conditional fetch
    last_modified: str | None = None


class NotModified(Exception):
    """The server answered 304 to a conditional request: the file is the one
    fetched last time (``url``: the URL that said so)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


redact = addresses.redact


def url_digest(url: str) -> str:
    """A digest of the whole URL (query string and all), to tell runs apart."""
    return blake3.blake3(url.encode()).hexdigest()[:32]


def filename_of(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return name or "download"


def check_address(host: str, port: int, *, allow_private: bool) -> str:
    """``core.addresses.check_address``, its refusals as the import's problems."""
    try:
        return addresses.check_address(host, port, allow_private=allow_private)
    except addresses.Unresolvable as exc:
        raise ImportFailed(str(exc), code="url_unreachable") from None
    except addresses.NotAllowed:
        raise ImportFailed(  # the address itself is the network's own: not told
            f"{host} resolves to an address of a private or local network; "
            "URL imports only read public addresses",
            code="address_not_allowed",
            host=host,
        ) from None


class _Retryable(Exception):
    pass


def fetch(
    urls: list[str],
    dest: Path,
    *,
    max_bytes: int,
    checksum: str | None,
    allow_private: bool,
    timeout_s: float,
    attempts: int,
    on_bytes: Callable[[int], None],
    max_seconds: float = 3600.0,
    conditional: dict[str, str] | None = None,
) -> Fetched:
    """Download the first mirror that works; raise ``ImportFailed`` saying why
    none did. ``timeout_s`` bounds each wait for the server; ``max_seconds``
    the whole download, every mirror and attempt included, so a server that
    trickles a byte just within each timeout cannot hold a worker for ever.
    ``conditional``: ``If-None-Match`` / ``If-Modified-Since`` headers from the
    last download (a schedule's); a 304 raises ``NotModified``."""
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds

    def tick(size: int) -> None:
        if time.monotonic() > deadline:
            raise ImportFailed(
                f"the download took longer than {max_seconds:g} s "
                "(DSA_URL_IMPORT_MAX_SECONDS); the server is too slow",
                code="url_too_slow",
                limit=max_seconds,
            )
        on_bytes(size)

    for url in urls:
        for attempt in range(attempts):
            tick(0)
            try:
                got = _download(
                    url, dest, max_bytes, allow_private, timeout_s, tick, conditional or {}
                )
            except _Retryable as exc:
                errors.append(f"{redact(url)}: {exc}")
                if attempt + 1 < attempts:
                    time.sleep(min(0.25 * 2**attempt, 8.0))
                continue
            except UrlNotUsable as exc:
                errors.append(f"{redact(url)}: {exc.detail}")
                break  # next mirror
            _verify(got, checksum)
            return got
    raise ImportFailed(
        "no URL could be downloaded: " + "; ".join(errors[-5:]),
        code="url_unreachable",
        attempts=errors,
    )


def _download(
    url: str,
    dest: Path,
    max_bytes: int,
    allow_private: bool,
    timeout_s: float,
    on_bytes: Callable[[int], None],
    conditional: dict[str, str],
) -> Fetched:
    current = url
    # trust_env=False: no proxy from the environment may hide the real destination
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UrlRefused(f"{current!r} is not an http(s) URL")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            addr = check_address(parts.hostname, port, allow_private=allow_private)
            to = addresses.pin(current, addr)
            try:
                with client.stream(
                    "GET", to.url, headers={**to.headers, **conditional}, extensions=to.extensions
                ) as resp:
                    if resp.status_code == 304 and conditional:
                        raise NotModified(current)
                    if resp.status_code in (301, 302, 303, 307, 308):
                        location = resp.headers.get("location")
                        if not location:
                            raise UrlRefused(f"{redact(current)} redirects nowhere")
                        current = urljoin(current, location)
                        continue
                    if resp.status_code >= 500:
                        raise _Retryable(f"HTTP {resp.status_code}")
                    if resp.status_code == 404:
                        raise UrlNotFound(f"{redact(current)} was not found (404)")
                    if resp.status_code >= 400:
                        raise UrlRefused(f"{redact(current)} answered HTTP {resp.status_code}")
                    return _save(resp, current, dest, max_bytes, on_bytes)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from None
    raise UrlRefused(f"{redact(url)} redirects more than {MAX_REDIRECTS} times")


def _save(
    resp: httpx.Response, url: str, dest: Path, max_bytes: int, on_bytes: Callable[[int], None]
) -> Fetched:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ImportFailed(
            f"{redact(url)} is {declared} bytes, over the limit of {max_bytes}",
            code="too_large",
            limit=max_bytes,
        )
    b3, sha = blake3.blake3(), hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        for block in resp.iter_bytes():  # as it arrives: the deadline is checked at each read
            size += len(block)
            if size > max_bytes:
                raise ImportFailed(
                    f"{redact(url)} is larger than the limit of {max_bytes} bytes",
                    code="too_large",
                    limit=max_bytes,
                )
            out.write(block)
            b3.update(block)
            sha.update(block)
            on_bytes(size)
    return Fetched(
        dest,
        url,
        filename_of(url),
        size,
        b3.hexdigest(),
        sha.hexdigest(),
        etag=_validator(resp.headers.get("etag")),
        last_modified=_validator(resp.headers.get("last-modified")),
    )


def _validator(value: str | None) -> str | None:
    """An ``ETag`` or ``Last-Modified`` the next request can send back: printable
    ASCII of a sane length, else none (a conditional request then asks for
    the whole file, rather than failing on a header it cannot encode)."""
    if value and len(value) <= 512 and value.isascii() and value.isprintable():
        return value
    return None


def _verify(got: Fetched, checksum: str | None) -> None:
    if not checksum:
        return
    algo, _, want = checksum.partition(":")
    have = got.blake3 if algo == "blake3" else got.sha256
    if have != want.lower():
        raise ImportFailed(
            f"the checksum does not match: expected {algo}:{want.lower()}, "
            f"the download from {redact(got.url)} has {algo}:{have}",
            code="checksum_mismatch",
            expected=f"{algo}:{want.lower()}",
            actual=f"{algo}:{have}",
        )
