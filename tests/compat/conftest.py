"""The compatibility suite: clients nobody here wrote, sending to a real inbox over a socket.

One inbox serves a whole module (each test tells its data apart by a unique tag), so the suite
stays fast. The npm clients (`@sentry/node`, `@sentry/cli`) are installed by `scripts/setup.sh
test` (run by `make test`) into a cache folder; like Debian's chromium for the browser tests, a
missing client is a failure that says how to install it, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk

from fastapi_sentry.inbox import InboxServer
from tests.e2e_support import wait_until

#: Where scripts/setup.sh installs the npm clients (keep the two in step).
CLIENTS_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "fastapi-sentry"
    / "compat-clients"
)
NODE_MODULES = CLIENTS_DIR / "node_modules"
SENTRY_CLI = NODE_MODULES / ".bin" / "sentry-cli"
NODE_SCRIPTS = Path(__file__).resolve().parent / "node"
DATA = Path(__file__).resolve().parent / "data"

LOGS = "/api/0/projects/{p}/logs/"
PERFORMANCE = "/api/0/projects/{p}/performance/"
EVENTS = "/api/0/projects/{p}/events/"
ISSUES = "/api/0/projects/{p}/issues/"
RELEASES = "/api/0/projects/{p}/releases/"


@pytest.fixture(scope="module")
def compat_inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InboxServer]:
    """One inbox for the module; tests keep apart by the unique `tag` in what they send.

    At the end every event it stored, from whichever client, must pass Relay's normalizer.
    """
    with InboxServer(tmp_path_factory.mktemp("compat") / "inbox.sqlite3") as inbox:
        yield inbox
        refused = stored_events_relay_refuses(inbox)
        if refused:
            pytest.fail(f"Relay's normalizer found errors in stored events: {refused}")


#: Added by the inbox's API to each stored event (Sentry's API does the same); not the event.
INBOX_FIELDS = ("eventID", "groupID", "projectID", "dateReceived", "raw_size")
#: Normalization errors accepted as harmless, as (type, name). Empty: Relay must find nothing.
BENIGN: frozenset[tuple[str, str]] = frozenset()


def normalization_errors(event: dict[str, Any]) -> list[dict[str, Any]]:
    """What Sentry's ingestion (Relay's StoreNormalizer) reports wrong with `event`."""
    from sentry_relay.processing import StoreNormalizer

    bare = {k: v for k, v in event.items() if k not in INBOX_FIELDS}
    normalized = StoreNormalizer().normalize_event(bare)
    return [
        error
        for error in normalized.get("errors") or []
        if (error.get("type"), error.get("name")) not in BENIGN
    ]


def stored_events_relay_refuses(inbox: InboxServer) -> dict[str, list[dict[str, Any]]]:
    """Errors, messages and transactions the inbox stored that Relay finds fault with."""
    stored = rows(api(inbox, EVENTS, limit="10000", type="error,default,transaction"))
    found = {str(e.get("eventID")): normalization_errors(e) for e in stored}
    return {event_id: errors for event_id, errors in found.items() if errors}


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def api(inbox: InboxServer, path: str, /, **params: str) -> Any:
    """GET a JSON API path of the default project (``{p}`` is its id); 200 or fail."""
    assert inbox.project is not None
    response = httpx.get(inbox.url + path.format(p=inbox.project.id), params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def page(inbox: InboxServer, path: str) -> str:
    response = httpx.get(inbox.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def rows(answer: Any) -> list[dict[str, Any]]:
    """The rows of a list answer, bare (Sentry's issues) or under ``data`` (its discover API)."""
    found = answer.get("data", []) if isinstance(answer, dict) else answer
    return [row for row in found if isinstance(row, dict)]


def wait_for_api(
    inbox: InboxServer,
    path: str,
    match: Callable[[dict[str, Any]], bool],
    what: str,
    count: int = 1,
    timeout: float = 15.0,
    **params: str,
) -> list[dict[str, Any]]:
    """Poll a JSON API list until `count` rows match; the clients send in the background."""

    def found() -> list[dict[str, Any]] | None:
        hits = [row for row in rows(api(inbox, path, **params)) if match(row)]
        return hits if len(hits) >= count else None

    return wait_until(found, timeout, f"{what} in {path}")


def issue_titled(inbox: InboxServer, title: str) -> dict[str, Any]:
    (issue,) = wait_for_api(
        inbox, ISSUES, lambda i: i["title"] == title, f"issue {title!r}", query=""
    )
    return issue


def capture_raised(error: Exception) -> None:
    """Raise `error` and capture it, so the event carries a stack trace as a real one does."""
    try:
        raise error
    except Exception as e:
        sentry_sdk.capture_exception(e)


def latest_event(inbox: InboxServer, issue: dict[str, Any]) -> dict[str, Any]:
    return api(inbox, f"/api/0/issues/{issue['id']}/events/latest/")  # type: ignore[no-any-return]


# -- the npm clients -------------------------------------------------------------------------


def _missing_client(what: str) -> str:
    return (
        f"{what} is missing from {CLIENTS_DIR}: run `bash scripts/setup.sh test` (`make test` "
        "does) to npm-install @sentry/node and @sentry/cli there."
    )


@pytest.fixture(scope="session")
def node_modules() -> Path:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the compatibility suite runs @sentry/node with it.")
    if not (NODE_MODULES / "@sentry" / "node" / "package.json").exists():
        pytest.fail(_missing_client("@sentry/node"))
    return NODE_MODULES


@pytest.fixture(scope="session")
def sentry_cli() -> Path:
    if not os.access(SENTRY_CLI, os.X_OK):
        pytest.fail(_missing_client("sentry-cli (@sentry/cli)"))
    return SENTRY_CLI


def client_env(dsn: str, **extra: str) -> dict[str, str]:
    """The test's environment (already without SENTRY_*) plus the DSN for a client process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    env.update(SENTRY_DSN=dsn, NODE_PATH=str(NODE_MODULES), **extra)
    return env


def run_client(
    argv: Sequence[str], env: dict[str, str], expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run a client to its end; its exit status must be `expect` (None: any)."""
    done = subprocess.run(
        list(argv),
        env=env,
        cwd=Path(__file__).resolve().parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if expect is not None:
        assert done.returncode == expect, (
            f"{argv[0]} exited {done.returncode}, expected {expect}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def run_node(script: str, dsn: str, tag: str) -> None:
    run_client(["node", str(NODE_SCRIPTS / script)], client_env(dsn, COMPAT_TAG=tag))


def package_version(name: str) -> str:
    return str(json.loads((NODE_MODULES / name / "package.json").read_text())["version"])
