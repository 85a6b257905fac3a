"""The client side of the ``dsa`` command: talks to a server over HTTP
(``DSA_URL``/``DSA_TOKEN`` or what ``dsa login`` saved).

Every command answers for people by default (tables, progress bars) and
with ``--json`` where it lists or reports. Exit codes: 0 done, 1 the server
refused or a job failed (one line saying why; ``--debug`` shows the
traceback), 2 usage errors, 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from typing import Any

from dsa import config, know
from dsa.client import Client
from dsa.errors import DsaClientError, ProblemError

COMMANDS = (
    "login", "datasets", "create", "upload", "log", "tables", "show", "diff",
    "branch", "tag", "merge", "export", "lock", "pull", *know.COMMANDS,
)  # fmt: skip


def _console(err: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=err, highlight=False)


def split_target(spec: str, default_ref: str | None = "main") -> tuple[str, str | None]:
    """``DATASET[@REF]`` → (dataset, ref). A ref may hold ``@{time}``: only an
    ``@`` before the first ``{`` separates."""
    head = spec.split("{", 1)[0]
    if "@" in head:
        i = head.index("@")
        if i + 1 < len(spec) and spec[i + 1] == "{":  # DATASET@{time}: the default branch's
            return spec[:i], (default_ref or "main") + spec[i:]
        return spec[:i], spec[i + 1 :] or default_ref
    return spec, default_ref


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    _console().print(t)


# --- commands -------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    url = config.normalise_url(args.url)
    token = args.token or os.environ.get("DSA_TOKEN")
    if not token:
        username = args.username or input("username: ")
        password = os.environ.get("DSA_PASSWORD") or getpass.getpass("password: ")
        with Client(url, "-") as c:
            c.session.http.headers.pop("Authorization", None)
            got = c.session.json(
                "POST", "/api/v1/auth/login", json={"username": username, "password": password}
            )
            c.session.http.headers["Authorization"] = f"Bearer {got['access_token']}"
            made = c.session.json(
                "POST", "/api/v1/tokens", json={"name": f"dsa CLI on {socket.gethostname()}"[:100]}
            )
            token = made["token"]
    with Client(url, token) as c:
        me = c.me()
    path = config.save(url, token, me["username"])
    _console().print(f"Logged in to {url} as [bold]{me['username']}[/] (saved in {path})")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    with Client() as c:
        items = c.datasets(args.q)
    if args.json:
        _print_json(items)
        return 0
    rows = [[d["name"], d.get("visibility"), d.get("description", ""), d["id"]] for d in items]
    _table(None, ["name", "visibility", "description", "id"], rows)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = {}
    if args.primary_key:
        kw["primary_key"] = [k.strip() for k in args.primary_key.split(",") if k.strip()]
    if args.description:
        kw["description"] = args.description
    if args.visibility:
        kw["visibility"] = args.visibility
    with Client() as c:
        ds = c.create_dataset(args.name, **kw)
    if args.json:
        _print_json(ds)
    else:
        _console().print(f"Created dataset [bold]{ds['name']}[/] ({ds['id']})")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from dsa.progress import upload_with_progress

    dataset, branch = split_target(args.target)
    assert branch is not None
    with Client() as c:
        job = upload_with_progress(
            c,
            dataset,
            args.file,
            branch=branch,
            table=args.table,
            mode=args.mode,
            message=args.message,
            wait=not args.no_wait,
            quiet=args.json or not sys.stderr.isatty(),
        )
    if args.json:
        _print_json(job)
    elif args.no_wait:
        print(job["id"])
    else:
        result = job.get("result") or {}
        note = " (unchanged: the branch already had these rows)" if result.get("unchanged") else ""
        _console(err=True).print(
            f"{result.get('rows', '?')} rows into {result.get('table', '?')} on {branch}{note}"
        )
        print(job["commit_id"])
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from dsa.graph import draw

    dataset, ref = split_target(args.target)
    assert ref is not None
    with Client() as c:
        commits = c.log(dataset, ref, limit=args.limit, all_parents=args.graph)
    if args.json:
        _print_json(commits)
        return 0
    console = _console()
    if args.graph:
        for prefix, commit in draw(commits):
            if commit is None:
                console.print(prefix)
            else:
                console.print(f"{prefix}[yellow]{commit['id'][:12]}[/] {_subject(commit)}")
        return 0
    for commit in commits:
        console.print(
            f"[yellow]{commit['id'][:12]}[/] {commit['created_at'][:19].replace('T', ' ')} "
            f"[dim]{commit['author']}[/] {_subject(commit)}"
        )
    return 0


def _subject(commit: dict[str, Any]) -> str:
    from rich.markup import escape

    return escape((commit.get("message") or "").splitlines()[0] if commit.get("message") else "")


def cmd_tables(args: argparse.Namespace) -> int:
    dataset, ref = split_target(args.target)
    assert ref is not None
    with Client() as c:
        got = c.tables(dataset, ref)
    if args.json:
        _print_json(got)
        return 0
    rows = [
        [
            t["name"],
            f"{t['row_count']:,}",
            ", ".join(f"{x['name']}:{x['type']}" for x in t["columns"]),
        ]
        for t in got["items"]
    ]
    _table(f"{dataset} at {got['commit_id'][:12]}", ["table", "rows", "columns"], rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    dataset, ref = split_target(args.target)
    assert ref is not None
    with Client() as c:
        got = c.rows(
            dataset,
            ref,
            args.table,
            offset=args.offset,
            limit=args.limit,
            filter=args.filter,
            sort=args.sort,
        )
    if args.json:
        _print_json(got)
        return 0
    names = [col["name"] for col in got["columns"]]
    title = (
        f"{got['table']} at {got['commit_id'][:12]}: rows {got['offset'] + 1}–"
        f"{got['offset'] + len(got['rows'])} of {got['total_rows']:,}"
    )
    _table(title, names, got["rows"])
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from dsa.present import print_diff

    if ".." not in args.range:
        raise DsaClientError(f"expected BASE..HEAD, not {args.range!r}")
    base, _, head = (
        args.range.partition("...") if "..." in args.range else args.range.partition("..")
    )
    with Client() as c:
        got = c.compare(args.dataset, base, head, args.table, offset=args.offset, limit=args.limit)
    if args.json:
        _print_json(got)
    else:
        print_diff(_console(), got)
    return 0


def cmd_branch(args: argparse.Namespace) -> int:
    with Client() as c:
        got = c.branch(args.dataset, args.name, args.from_ref)
    if args.json:
        _print_json(got)
    else:
        _console().print(f"Branch [bold]{args.name}[/] at {str(got.get('commit_id'))[:12]}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    with Client() as c:
        got = c.tag(args.dataset, args.name, args.from_ref, args.message)
    if args.json:
        _print_json(got)
    else:
        _console().print(f"Tag [bold]{args.name}[/] at {str(got.get('commit_id'))[:12]}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    with Client() as c:
        got = c.merge(
            args.dataset, args.source, args.into, strategy=args.strategy, message=args.message
        )
    if args.json:
        _print_json(got)
    else:
        how = "fast-forward" if got.get("fast_forward") else "merge commit"
        _console(err=True).print(f"Merged {args.source} into {args.into} ({how})")
        print(got["commit_id"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dsa.progress import export_with_progress

    dataset, ref = split_target(args.target)
    assert ref is not None
    fmt = args.format or _format_of(args.output)
    with Client() as c:
        got = export_with_progress(
            c,
            dataset,
            ref,
            args.table,
            fmt,
            args.output,
            quiet=args.json or not sys.stderr.isatty(),
            resume=True,  # a Parquet download interrupted before continues by range
        )
    if args.json:
        _print_json(got)
    else:
        again = f" (resumed at {got['resumed_from']:,})" if got.get("resumed_from") else ""
        _console(err=True).print(f"{got['bytes']:,} bytes written to {args.output}{again}")
    return 0


def _format_of(path: str) -> str:
    suffix = path.lower().rsplit(".", 1)[-1] if "." in path else ""
    return _SUFFIXES.get(suffix, "parquet")


_SUFFIXES = {
    **{f: f for f in ("csv", "tsv", "parquet", "xlsx", "ndjson", "arrow")},
    "jsonl": "ndjson",
    "feather": "arrow",
}


def cmd_lock(args: argparse.Namespace) -> int:
    from dsa import lock

    dataset, ref = split_target(args.target)
    assert ref is not None
    with Client() as c:
        entry = lock.add(c, args.lock, dataset, ref, args.table or None)
    if args.json:
        _print_json(entry)
    else:
        n = len(entry["tables"])
        _console().print(
            f"Pinned {entry['dataset']} at {entry['commit'][:12]} "
            f"({n} table{'s' * (n != 1)}) in {args.lock}"
        )
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from dsa import lock

    report = lock.pull(args.lock, args.dir, quiet=args.json or not sys.stderr.isatty())
    if args.json:
        _print_json(report)
    bad = [r for r in report if not r["ok"]]
    if bad:
        first = bad[0]
        print(f"dsa: {first['dataset']}/{first['table']}: {first['problem']}", file=sys.stderr)
        return 1
    if not args.json:
        _console(err=True).print(f"{len(report)} table(s) pulled and verified into {args.dir}")
    return 0


# --- the parser -------------------------------------------------------------------
def register(sub: Any) -> None:
    """Add the client's commands to the ``dsa`` parser's subcommands."""

    def add(name: str, help: str, fn: Any, *, json_flag: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help)
        p.set_defaults(fn=fn, client=True)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        return p

    _account_and_upload(add)
    _reading(add)
    _changing(add)
    know.register(add)


def _account_and_upload(add: Any) -> None:
    p = add(
        "login",
        "save a server's URL and a token for the commands below",
        cmd_login,
        json_flag=False,
    )
    p.add_argument("url")
    p.add_argument("--username")
    p.add_argument("--token", help="an API token (else: sign in and make one)")
    p = add("datasets", "list the datasets you may read", cmd_datasets)
    p.add_argument("-q", dest="q", help="only names containing this")
    p = add("create", "create a dataset", cmd_create)
    p.add_argument("name")
    p.add_argument("--primary-key", help="columns, comma-separated")
    p.add_argument("--description")
    p.add_argument("--visibility", choices=["private", "internal", "public"])
    p = add("upload", "upload a file as a new version (DATASET[@BRANCH])", cmd_upload)
    p.add_argument("file")
    p.add_argument("target", metavar="DATASET[@BRANCH]")
    p.add_argument("--table")
    p.add_argument("--mode", choices=["replace", "append", "upsert"], default="replace")
    p.add_argument("-m", "--message")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return")


def _reading(add: Any) -> None:
    p = add("log", "history of a ref (DATASET[@REF])", cmd_log)
    p.add_argument("target", metavar="DATASET[@REF]")
    p.add_argument("--graph", action="store_true", help="every parent, drawn as a graph")
    p.add_argument("-n", "--limit", type=int, default=50)
    p = add("tables", "the tables of a version", cmd_tables)
    p.add_argument("target", metavar="DATASET[@REF]")
    p = add("show", "rows of a table at a version", cmd_show)
    p.add_argument("target", metavar="DATASET[@REF]")
    p.add_argument("--table")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--filter")
    p.add_argument("--sort")
    p = add("diff", "what changed between two versions", cmd_diff)
    p.add_argument("dataset")
    p.add_argument("range", metavar="BASE..HEAD")
    p.add_argument("--table")
    p.add_argument("--limit", type=int, default=20, help="changes shown (default 20)")
    p.add_argument("--offset", type=int, default=0)


def _changing(add: Any) -> None:
    p = add("branch", "create a branch", cmd_branch)
    p.add_argument("dataset")
    p.add_argument("name")
    p.add_argument("--from", dest="from_ref", default="main")
    p = add("tag", "create a tag", cmd_tag)
    p.add_argument("dataset")
    p.add_argument("name")
    p.add_argument("--from", dest="from_ref", default="main")
    p.add_argument("-m", "--message")
    p = add("merge", "merge SOURCE into a branch", cmd_merge)
    p.add_argument("dataset")
    p.add_argument("source")
    p.add_argument("--into", required=True, metavar="TARGET")
    p.add_argument("--strategy", choices=["fail", "ours", "theirs"])
    p.add_argument("-m", "--message")
    p = add("export", "download a table (format from -o's suffix)", cmd_export)
    p.add_argument("target", metavar="DATASET@REF")
    p.add_argument("--table")
    p.add_argument("--format", choices=["csv", "tsv", "parquet", "xlsx", "ndjson", "arrow"])
    p.add_argument("-o", "--output", required=True)
    p = add("lock", "pin versions in a lock file: dsa lock add DATASET@REF", cmd_lock)
    p.add_argument("action", choices=["add"])
    p.add_argument("target", metavar="DATASET@REF")
    p.add_argument("--table", action="append", help="only this table (repeatable)")
    p.add_argument("--lock", default="dsa.lock")
    p = add("pull", "download and verify every table a lock file pins", cmd_pull)
    p.add_argument("--lock", default="dsa.lock")
    p.add_argument("--dir", default="data")


def run(args: argparse.Namespace) -> int:
    """Run a client command: one line and exit 1 for what went wrong."""
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        print("dsa: interrupted", file=sys.stderr)
        return 130
    except (ProblemError, DsaClientError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"dsa: {err}", file=sys.stderr)
        return 1
