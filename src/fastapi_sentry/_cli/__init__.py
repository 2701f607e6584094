"""The `fastapi-sentry` command: one module per subcommand (`check`, `inbox`, `demo`).

Commands are imported when they run, so `check` never pays for the inbox or the demo.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from fastapi_sentry._cli import check, inbox
from fastapi_sentry._cli._output import PROG
from fastapi_sentry._version import __version__

__all__ = ["build_parser", "main"]


def _versions() -> str:
    try:
        sdk = importlib.metadata.version("sentry-sdk")
    except importlib.metadata.PackageNotFoundError:
        sdk = "not installed"
    return f"{PROG} {__version__} (sentry-sdk {sdk})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sentry for FastAPI services: check the settings, run a local inbox.",
    )
    parser.add_argument("--version", action="version", version=_versions())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check.add_parser(commands)
    inbox.add_parser(commands)
    commands.add_parser(
        "demo",
        help="run the example service against a local inbox (see `fastapi-sentry demo --help`)",
        add_help=False,
    )
    return parser


def _demo(argv: list[str]) -> int:
    # imported on use: the demo pulls in uvicorn, httpx and the inbox, which check does not need
    from fastapi_sentry._cli.demo import run_demo

    return run_demo(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        # The demo parses its own arguments.
        return _demo(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "demo":
        return _demo([])
    return int(args.run(args))
