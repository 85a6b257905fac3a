"""S3 clients against one S3-protocol server: the measurements behind
decision 0020 (not part of ``make bench``).

Run: ``.venv/bin/python tests/bench/bench_s3_clients.py`` (obstore is
measured too when installed: ``.venv/bin/pip install obstore``). Starts moto
in server mode on 127.0.0.1; per client: 8 PUTs and GETs of 8 MiB, 50
ranged GETs of 64 KiB and 50 HEADs (medians); then whether a forked child
of a process that used the client can still read (10 s alarm).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from moto.server import ThreadedMotoServer

BUCKET = "dsa-bench-clients"


def timed(fn: Callable[[int], Any], n: int) -> float:
    xs = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        xs.append(time.perf_counter() - t)
    return statistics.median(xs)


def forked_read_works(read: Callable[[], Any]) -> bool:
    read()  # the parent uses the client first
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(10)
        try:
            read()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1")
    urllib.request.urlopen(urllib.request.Request(f"{url}/{BUCKET}", method="PUT")).close()
    data = os.urandom(8 << 20)

    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=url, config=Config(s3={"addressing_style": "path"}))
    clients: dict[str, dict[str, Callable[[int], Any]]] = {
        "boto3": {
            "put": lambda i: s3.put_object(Bucket=BUCKET, Key=f"b/{i}", Body=data),
            "get": lambda i: s3.get_object(Bucket=BUCKET, Key=f"b/{i % 8}")["Body"].read(),
            "range": lambda i: s3.get_object(
                Bucket=BUCKET, Key=f"b/{i % 8}", Range="bytes=1000000-1065535"
            )["Body"].read(),
            "head": lambda i: s3.head_object(Bucket=BUCKET, Key=f"b/{i % 8}"),
        }
    }
    try:
        import obstore
        from obstore.store import S3Store

        ob = S3Store(
            BUCKET,
            endpoint=url,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
            region="us-east-1",
        )
        clients["obstore"] = {
            "put": lambda i: obstore.put(ob, f"o/{i}", data),
            "get": lambda i: bytes(obstore.get(ob, f"o/{i % 8}").bytes()),
            "range": lambda i: bytes(
                obstore.get_range(ob, f"o/{i % 8}", start=1000000, end=1065536)
            ),
            "head": lambda i: obstore.head(ob, f"o/{i % 8}"),
        }
    except ImportError:
        print("obstore not installed: skipped")
    for name, ops in clients.items():
        put, get = timed(ops["put"], 8), timed(ops["get"], 8)
        rng, head = timed(ops["range"], 50), timed(ops["head"], 50)
        fork_ok = forked_read_works(lambda ops=ops: ops["head"](0))
        print(
            f"{name:8} PUT 8 MiB {put * 1000:6.1f} ms  GET 8 MiB {get * 1000:6.1f} ms  "
            f"range 64 KiB {rng * 1000:5.2f} ms  HEAD {head * 1000:5.2f} ms  "
            f"forked child reads: {'yes' if fork_ok else 'NO (hangs)'}"
        )
    server.stop()


if __name__ == "__main__":
    main()
