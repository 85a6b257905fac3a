"""The URL fetcher refuses private and local addresses before connecting."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from features.imports.errors import ImportFailed
from features.imports.fetch import check_address, fetch


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "0.0.0.0",
        # IPv6 forms that carry an IPv4 address, which Python's is_global
        # calls global (issue 15, "SSRF residue")
        "64:ff9b::7f00:1",  # NAT64 (RFC 6052) of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:808:808::1",  # 6to4, even of a public address: a relay decides where it goes
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "::8.8.8.8",
    ],  # fmt: skip
)
def test_private_and_local_addresses_are_refused(host: str) -> None:
    with pytest.raises(ImportFailed) as exc:
        check_address(host, 80, allow_private=False)
    assert exc.value.code == "address_not_allowed"


def test_public_addresses_pass_and_the_setting_lifts_the_rule() -> None:
    assert check_address("8.8.8.8", 443, allow_private=False) == "8.8.8.8"
    assert check_address("127.0.0.1", 80, allow_private=True) == "127.0.0.1"


def test_fetch_never_connects_to_a_refused_address(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    with pytest.raises(ImportFailed) as exc:
        fetch(
            [f"http://127.0.0.1:{port}/x.csv"],
            tmp_path / "x",
            max_bytes=1000,
            checksum=None,
            allow_private=False,
            timeout_s=2,
            attempts=1,
            on_bytes=lambda n: None,
        )
    assert exc.value.code == "address_not_allowed"
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody knocked
    listener.close()


def test_a_trickling_server_cannot_hold_the_download(tmp_path: Path) -> None:
    """A byte every 0.2 s never trips the per-read timeout; the deadline of
    the whole download ends it (issue 15; before, it ran as long as the
    server kept trickling)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                try:
                    self.wfile.write(b"a")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(ImportFailed) as exc:
            fetch(
                [f"http://127.0.0.1:{server.server_address[1]}/slow.csv"],
                tmp_path / "x",
                max_bytes=10_000,
                checksum=None,
                allow_private=True,
                timeout_s=5,
                attempts=3,
                on_bytes=lambda n: None,
                max_seconds=1.0,
            )
    finally:
        server.shutdown()
    assert exc.value.code == "url_too_slow" and "DSA_URL_IMPORT_MAX_SECONDS" in exc.value.detail
    assert time.monotonic() - started < 5
