"""`fastapi-sentry inbox`: run the local Sentry-compatible inbox, or manage its projects."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from fastapi_sentry._cli._output import EXIT_OK, EXIT_USAGE, error, port, say

if TYPE_CHECKING:
    from fastapi_sentry.inbox import InboxInfo, Project

DEFAULT_INBOX_HOST = "127.0.0.1"
DEFAULT_INBOX_PORT = 8969
DEFAULT_INBOX_DB = ".fastapi-sentry/inbox.sqlite3"
INBOX_TOKEN_VARIABLE = "FASTAPI_SENTRY_INBOX_TOKEN"
INBOX_ALERTS_VARIABLE = "FASTAPI_SENTRY_INBOX_ALERTS"
INBOX_EXTRA_HINT = "install it with: pip install 'fastapi-sentry[inbox]'"


def add_parser(commands: Any) -> None:
    inbox = commands.add_parser(
        "inbox",
        help="run a local Sentry-compatible inbox, or manage its projects",
        description=(
            "serve (the default): run the inbox and print each project's DSN; "
            "create-project NAME: add a project and print its DSN; "
            "list-projects: print the projects and their DSNs."
        ),
    )
    inbox.add_argument(
        "action",
        nargs="?",
        default="serve",
        choices=("serve", "create-project", "list-projects"),
        help="what to do (default: serve)",
    )
    inbox.add_argument(
        "name", nargs="?", metavar="NAME", help="the project name, for create-project"
    )
    inbox.add_argument(
        "--host",
        default=DEFAULT_INBOX_HOST,
        help="address to listen on (default 127.0.0.1; any other needs a token, made if absent)",
    )
    inbox.add_argument(
        "--port",
        type=port,
        default=DEFAULT_INBOX_PORT,
        help=f"port (default {DEFAULT_INBOX_PORT}; 0 picks a free one)",
    )
    inbox.add_argument(
        "--db",
        default=DEFAULT_INBOX_DB,
        help=f"SQLite database file, created if missing (default {DEFAULT_INBOX_DB})",
    )
    inbox.add_argument(
        "--token",
        default=os.environ.get(INBOX_TOKEN_VARIABLE) or None,
        help=f"token that protects the pages and API (default: ${INBOX_TOKEN_VARIABLE})",
    )
    inbox.add_argument(
        "--alerts",
        metavar="FILE",
        default=os.environ.get(INBOX_ALERTS_VARIABLE) or None,
        help=f"TOML file of alert rules, checked at start (default: ${INBOX_ALERTS_VARIABLE})",
    )
    inbox.add_argument(
        "--max-events",
        type=_positive(int),
        metavar="N",
        help="keep at most N events per project, deleting the oldest (default: no limit)",
    )
    inbox.add_argument(
        "--max-age",
        type=_positive(float),
        metavar="DAYS",
        help="delete events older than DAYS days (default: keep them)",
    )
    inbox.set_defaults(parser=inbox, run=run)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{value!r} must be more than 0")
        return number

    return parse


def _inbox_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def _print_projects(projects: Sequence[Project], url: str) -> None:
    width = max(len(p.name) for p in projects)
    for project in projects:
        say(f"  {project.id:>3}  {project.name:<{width}}  SENTRY_DSN={project.dsn(url)}")


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.action != "create-project" and args.name is not None:
        parser.error(f"unexpected argument {args.name!r}; only create-project takes a NAME")
    if args.action == "create-project" and not args.name:
        parser.error("create-project needs a NAME, e.g. `fastapi-sentry inbox create-project api`")
    if args.action != "serve" and args.port == 0:
        parser.error(f"{args.action} prints DSNs, so it needs the --port the inbox serves on")
    try:
        from fastapi_sentry.inbox import InboxStore, serve
        from fastapi_sentry.inbox._alerts import AlertRulesError, load_rules
    except ImportError as exc:
        return error(f"the inbox needs the inbox extra ({exc}); {INBOX_EXTRA_HINT}")
    rules = None
    if args.alerts is not None and args.action == "serve":
        try:
            rules = load_rules(args.alerts)
        except AlertRulesError as exc:
            return error(str(exc), EXIT_USAGE)

    url = _inbox_url(args.host, args.port)
    try:
        with InboxStore(args.db) as store:
            store.default_project()
            if args.action == "create-project":
                project = store.create_project(args.name)
                say(f"Created project {project.name!r} in {args.db}:")
                _print_projects([project], url)
                return EXIT_OK
            projects = store.list_projects()
    except ValueError as exc:  # a duplicate or over-long project name
        return error(str(exc))
    except OSError as exc:
        return error(f"cannot open the inbox database {args.db!r} ({exc}); pass another --db.")
    if args.action == "list-projects":
        say(f"Projects in {args.db} (DSNs for {url}):")
        _print_projects(projects, url)
        return EXIT_OK

    def on_ready(info: InboxInfo) -> None:
        say(f"fastapi-sentry inbox: {info.url}/  (database {args.db})")
        _print_projects(projects, info.url)
        if info.token is not None:
            say(
                f"Token: {info.token}",
                f"  open {info.url}/?token={info.token} or send 'Authorization: Bearer <token>'",
            )
        if rules is not None:
            say(f"Alerts: {len(rules.rules)} rule(s) from {args.alerts}")
        say("Serving until Ctrl-C.")

    inbox_logger = logging.getLogger("fastapi_sentry.inbox")
    if not inbox_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        inbox_logger.addHandler(handler)
        inbox_logger.setLevel(logging.INFO)
    # SIGTERM (docker stop, systemd) ends the inbox as cleanly as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        serve(
            host=args.host,
            port=args.port,
            db_path=args.db,
            token=args.token,
            on_ready=on_ready,
            alerts=rules,
            max_events=args.max_events,
            max_age_days=args.max_age,
        )
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        return error(exc.strerror or str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("Inbox stopped.")
    return EXIT_OK
