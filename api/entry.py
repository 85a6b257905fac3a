"""The ``dsa`` command's entry point: a client command (``dsa login``,
``upload``, ``log``, …) starts without importing the server (its settings,
database driver and web framework: ~0.3 s of a terminal's wait); anything
else, and ``--help``, goes to ``api.cli`` with every command."""

from __future__ import annotations

import argparse
import sys

from dsa import cli as client_cli


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in client_cli.COMMANDS and not {"-h", "--help"} & set(args):
        parser = argparse.ArgumentParser(prog="dsa")
        client_cli.register(parser.add_subparsers(dest="command", required=True))
        return client_cli.run(parser.parse_args(args))
    from api.cli import main as full

    return full(args)


if __name__ == "__main__":
    raise SystemExit(main())
