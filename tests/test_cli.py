"""The `fastapi-sentry` command against real servers on 127.0.0.1; sentry-sdk does the sending."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from fastapi_sentry import __version__
from fastapi_sentry._cli import main
from fastapi_sentry._cli.check import CHECK_MESSAGE, CHECK_TAG
from fastapi_sentry._settings import DSN_HELP
from fastapi_sentry.inbox import InboxServer
from tests.support.ports import free_port

EVENT_ID = re.compile(r"^Event ID: ([0-9a-f]{32})$", re.MULTILINE)
SECRET_KEY = "f00dfacef00dfacef00dfacef00dface"


# --- helpers ------------------------------------------------------------------------------------


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The console path for real: a new interpreter running `python -m fastapi_sentry`.

    A command that outlives `timeout` fails the test (TimeoutExpired): that is how a hang shows."""
    return subprocess.run(
        [sys.executable, "-m", "fastapi_sentry", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class StatusServer:
    """An ingest endpoint that answers every POST with a fixed status, or never answers."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    hang: bool = False
    posts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.posts.append(self.path)
                if server.hang:
                    server.release.wait(30)
                self.send_response(server.status)
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.dsn = f"http://{SECRET_KEY}@127.0.0.1:{self._server.server_address[1]}/7"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("fastapi-sentry: ")
    assert "Traceback" not in err
    return lines[0]


def get_json(url: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class InboxProcess:
    """`fastapi-sentry inbox` in a child process, with its stdout read line by line."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastapi_sentry", "inbox", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            self.lines.put(line.rstrip("\n"))

    def read_until(self, text: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            try:
                self.seen.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"the inbox did not print {text!r} within {timeout} s; it printed {self.seen!r}"
                ) from None
        return self.seen

    def dsns(self) -> dict[str, str]:
        found = {}
        for line in self.seen:
            match = re.match(r"^\s+\d+\s+(\S+)\s+SENTRY_DSN=(\S+)$", line)
            if match:
                found[match[1]] = match[2]
        return found

    def url(self) -> str:
        for line in self.seen:
            match = re.match(r"^fastapi-sentry inbox: (http://\S+)/ ", line)
            if match:
                return match[1]
        raise AssertionError(f"no URL line in {self.seen!r}")

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        finally:
            self.close()
        self._reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def release(self) -> None:
        """Close the pipes once the reader has seen the end of stdout (no leaked files)."""
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def inbox_process(tmp_path: Path) -> Iterator[list[InboxProcess]]:
    started: list[InboxProcess] = []
    yield started
    for process in started:
        process.close()
        process.release()
        for stream in (process.proc.stdout, process.proc.stderr):
            if stream is not None:
                stream.close()


def send_error_with_sdk(dsn: str, message: str) -> str:
    """A real error event from sentry-sdk over its HTTP transport; returns its id."""
    sentry_sdk.init(dsn=dsn)
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        event_id = sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=5)
    assert event_id is not None
    return event_id


# --- check --------------------------------------------------------------------------------------


def test_check_delivers_to_a_real_inbox_through_the_console_path(tmp_path: Path) -> None:
    with InboxServer(tmp_path / "inbox.sqlite3") as inbox:
        result = run_cli("check", cwd=tmp_path, env={"SENTRY_DSN": inbox.dsn})
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        match = EVENT_ID.search(result.stdout)
        assert match, result.stdout
        stored = inbox.wait_for(1, timeout=10, type="default")
        issue = inbox.issues()[0]

    assert [event["eventID"] for event in stored] == [match[1]]
    assert stored[0]["message"] == CHECK_MESSAGE
    assert stored[0]["tags"][CHECK_TAG] == "true"
    assert stored[0]["environment"] == "production"
    assert "HTTP 200" in result.stdout
    # the printed link is the issue page of exactly that event
    assert f"{inbox.url}/issues/{issue['id']}/?project=1" in result.stdout
    key = inbox.dsn.split("//")[1].split("@")[0]
    assert key not in result.stdout


def test_check_reads_dotenv_like_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with InboxServer(tmp_path / "inbox.sqlite3") as inbox:
        (tmp_path / ".env").write_text(f"SENTRY_DSN={inbox.dsn}\nSENTRY_ENVIRONMENT=staging\n")
        assert main(["check", "--timeout", "10"]) == 0
        out = capsys.readouterr().out
        stored = inbox.wait_for(1, type="default")
    assert stored[0]["eventID"] == EVENT_ID.search(out)[1]  # type: ignore[index]
    assert stored[0]["environment"] == "staging"
    assert "environment='staging'" in out


def test_check_sends_even_when_errors_are_sampled_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with StatusServer() as server:
        monkeypatch.setenv("SENTRY_DSN", server.dsn)
        monkeypatch.setenv("SENTRY_ERROR_SAMPLE_RATE", "0")
        assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert server.posts == ["/api/7/envelope/"]
    assert "SENTRY_ERROR_SAMPLE_RATE is 0" in out
    assert "See it in Sentry: open project 7" in out


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (
            500,
            {},
            b'{"detail": "database is down"}',
            "HTTP 500 (the server could not take it): database is down",
        ),
        (429, {"Retry-After": "60"}, b"", "rate-limited it (HTTP 429, retry after 60 s)"),
        (403, {}, b"{}", "HTTP 403 (the DSN's key was not accepted; copy the DSN again)"),
    ],
)
def test_check_fails_when_the_server_refuses_the_event(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    headers: dict[str, str],
    body: bytes,
    expected: str,
) -> None:
    with StatusServer(status=status, headers=headers, body=body) as server:
        monkeypatch.setenv("SENTRY_DSN", server.dsn)
        assert main(["check", "--timeout", "10"]) == 1
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert server.posts[0] == "/api/7/envelope/"  # the SDK really sent it there
    assert re.match(
        r"^fastapi-sentry: the test event [0-9a-f]{32} was not accepted by 127\.0\.0\.1:\d+ "
        r"\(project 7\): ",
        line,
    ), line
    assert expected in line
    assert captured.out == ""
    assert SECRET_KEY not in captured.err


def test_check_fails_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("SENTRY_DSN", f"http://{SECRET_KEY}@127.0.0.1:{port}/3")
    assert main(["check"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"not accepted by 127.0.0.1:{port} (project 3): the request failed:" in line
    assert "Connection refused" in line
    assert SECRET_KEY not in line


def test_check_gives_up_after_its_timeout_when_the_server_never_answers(tmp_path: Path) -> None:
    with StatusServer(hang=True) as server:
        # the server never answers: only the command's own timeout can end it before ours
        result = run_cli(
            "check", "--timeout", "1.5", cwd=tmp_path, env={"SENTRY_DSN": server.dsn}, timeout=30
        )
        assert server.posts  # it was reached, and kept the request waiting
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "was not delivered to 127.0.0.1:" in line
    assert "within 1.5 s (no answer)" in line
    assert result.stdout == ""


def test_check_with_a_bad_dsn_says_why_in_one_line_and_exits_2(tmp_path: Path) -> None:
    dsn = f"http://{SECRET_KEY}@127.0.0.1:9/project"
    result = run_cli("check", cwd=tmp_path, env={"SENTRY_DSN": dsn})
    assert result.returncode == 2
    assert result.stderr == (
        "fastapi-sentry: Invalid Sentry settings: SENTRY_DSN is not a valid DSN: it must end "
        f"with a numeric project id. {DSN_HELP}\n"
    )
    assert result.stdout == ""
    assert SECRET_KEY not in result.stderr


def test_check_names_every_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SENTRY_DSN", f"http://{SECRET_KEY}@127.0.0.1:9/1")
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "2")
    monkeypatch.setenv("SENTRY_MAX_BREADCRUMBS", "many")
    assert main(["check"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "fastapi-sentry: Invalid Sentry settings: SENTRY_TRACES_SAMPLE_RATE must be between "
        "0.0 and 1.0, got '2'; SENTRY_MAX_BREADCRUMBS must be a whole number, got 'many'\n"
    )
    assert captured.out == ""


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "Sentry is off (SENTRY_DSN is not set)"),
        ({"SENTRY_DSN": "  "}, "Sentry is off (SENTRY_DSN is not set)"),
        (
            {"SENTRY_DSN": f"http://{SECRET_KEY}@127.0.0.1:9/1", "SENTRY_ENABLED": "false"},
            "Sentry is off (SENTRY_ENABLED is false)",
        ),
    ],
)
def test_check_without_sentry_on_says_how_to_turn_it_on(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    reason: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["check"]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert line.startswith(
        f"fastapi-sentry: {reason}, so there is nothing to check; set SENTRY_DSN"
    )
    assert ("SENTRY_ENABLED=true" in line) == ("SENTRY_ENABLED" in env)
    assert SECRET_KEY not in captured.err + captured.out


@pytest.mark.parametrize("value", ["0", "-1", "soon", "601"])
def test_check_rejects_a_bad_timeout_with_usage(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--timeout", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastapi-sentry check")
    assert f"argument --timeout: {value!r}" in err


# --- inbox --------------------------------------------------------------------------------------


def test_inbox_serves_prints_its_dsn_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, inbox_process: list[InboxProcess]
) -> None:
    db = tmp_path / "data" / "inbox.sqlite3"
    inbox = InboxProcess("--port", "0", "--db", str(db), cwd=tmp_path)
    inbox_process.append(inbox)
    inbox.read_until("Serving until Ctrl-C.")
    url = inbox.url()
    dsn = inbox.dsns()["default"]
    assert re.fullmatch(rf"http://[0-9a-f]{{32}}@{re.escape(url[len('http://') :])}/1", dsn)
    assert not any("Token" in line for line in inbox.seen)  # loopback: no token

    event_id = send_error_with_sdk(dsn, "boom from the CLI test")
    events = get_json(f"{url}/api/0/projects/1/events/")
    assert [e["eventID"] for e in events] == [event_id]
    assert events[0]["exception"]["values"][0]["value"] == "boom from the CLI test"
    with urllib.request.urlopen(f"{url}/", timeout=5) as page:  # the web URL it printed
        assert page.headers["Content-Type"].startswith("text/html")
        assert "RuntimeError" in page.read().decode()

    code, err = inbox.stop(signal.SIGINT)
    assert code == 0, err
    assert inbox.seen[-1] == "Inbox stopped."
    assert "Traceback" not in err
    assert db.exists()


def test_inbox_stops_cleanly_on_sigterm_and_keeps_its_projects(
    tmp_path: Path, inbox_process: list[InboxProcess]
) -> None:
    db = str(tmp_path / "inbox.sqlite3")
    created = run_cli(
        "inbox", "create-project", "billing", "--db", db, "--port", "9000", cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    assert re.search(
        r"^\s+2\s+billing\s+SENTRY_DSN=http://[0-9a-f]{32}@127\.0\.0\.1:9000/2$",
        created.stdout,
        re.MULTILINE,
    ), created.stdout

    listed = run_cli("inbox", "list-projects", "--db", db, "--port", "9000", cwd=tmp_path)
    assert listed.returncode == 0
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["default", "billing"]

    again = run_cli("inbox", "create-project", "billing", "--db", db, cwd=tmp_path)
    assert again.returncode == 1
    assert one_error_line(again.stderr).startswith(
        "fastapi-sentry: A project named 'billing' already exists"
    )

    inbox = InboxProcess("--port", "0", "--db", db, cwd=tmp_path)
    inbox_process.append(inbox)
    inbox.read_until("Serving until Ctrl-C.")
    dsns = inbox.dsns()
    assert list(dsns) == ["default", "billing"]
    event_id = send_error_with_sdk(dsns["billing"], "billing broke")
    url = inbox.url()
    assert [e["eventID"] for e in get_json(f"{url}/api/0/projects/2/events/")] == [event_id]
    assert get_json(f"{url}/api/0/projects/1/events/") == []

    code, err = inbox.stop(signal.SIGTERM)
    assert code == 0, err
    assert inbox.seen[-1] == "Inbox stopped."


def test_inbox_beyond_loopback_prints_a_token_and_requires_it(
    tmp_path: Path, inbox_process: list[InboxProcess]
) -> None:
    # Bound to all interfaces only for these seconds, and only ever spoken to over 127.0.0.1.
    port = free_port()
    inbox = InboxProcess(
        "--host", "0.0.0.0", "--port", str(port), "--db", "db.sqlite3", cwd=tmp_path
    )
    inbox_process.append(inbox)
    inbox.read_until("Serving until Ctrl-C.")
    tokens = [line.split(": ", 1)[1] for line in inbox.seen if line.startswith("Token: ")]
    assert len(tokens) == 1
    assert len(tokens[0]) >= 24
    local = f"http://127.0.0.1:{port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{local}/api/0/projects/")
    assert refused.value.code == 401
    refused.value.close()
    assert [p["name"] for p in get_json(f"{local}/api/0/projects/", tokens[0])] == ["default"]

    # the DSN still ingests without the token, and `check` points at the inbox, not at Sentry
    key = inbox.dsns()["default"].split("//")[1].split("@")[0]
    checked = run_cli("check", cwd=tmp_path, env={"SENTRY_DSN": f"http://{key}@127.0.0.1:{port}/1"})
    assert checked.returncode == 0, checked.stderr
    assert (
        f"See it in the fastapi-sentry inbox: {local}/?project=1 (with the token" in checked.stdout
    )
    assert tokens[0] not in checked.stdout

    code, _ = inbox.stop()
    assert code == 0


def test_inbox_token_can_come_from_the_environment(
    tmp_path: Path, inbox_process: list[InboxProcess]
) -> None:
    inbox = InboxProcess(
        "--port",
        "0",
        "--db",
        "db.sqlite3",
        cwd=tmp_path,
        env={"FASTAPI_SENTRY_INBOX_TOKEN": "let-me-read"},
    )
    inbox_process.append(inbox)
    inbox.read_until("Serving until Ctrl-C.")
    url = inbox.url()
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{url}/api/0/projects/")
    refused.value.close()
    assert refused.value.code == 401
    assert get_json(f"{url}/api/0/projects/", "let-me-read")[0]["name"] == "default"
    assert inbox.stop()[0] == 0


def test_inbox_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("inbox", "--port", str(port), "--db", "db.sqlite3", cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"The inbox cannot listen on 127.0.0.1:{port}" in line
    assert "choose another --port" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inbox", "--port", "70000"], "argument --port: 70000 is not a port number (0-65535)"),
        (["inbox", "create-project"], "create-project needs a NAME"),
        (["inbox", "list-projects", "extra"], "unexpected argument 'extra'"),
        (["inbox", "list-projects", "--port", "0"], "needs the --port the inbox serves on"),
        (["inbox", "launch"], "argument action: invalid choice: 'launch'"),
    ],
)
def test_inbox_rejects_bad_arguments_with_usage(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastapi-sentry inbox")
    assert message in err


# --- demo, version, usage -----------------------------------------------------------------------


def test_demo_is_dispatched_with_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run_demo(argv: list[str]) -> int:
        calls.append(argv)
        return 5

    fake = types.ModuleType("fastapi_sentry._cli.demo")
    fake.run_demo = run_demo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fastapi_sentry._cli.demo", fake)
    assert main(["demo", "--port", "0", "--help"]) == 5
    assert calls == [["--port", "0", "--help"]]


def test_console_script_prints_versions(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("fastapi-sentry")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout == f"fastapi-sentry {__version__} (sentry-sdk {sentry_sdk.VERSION})\n"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastapi-sentry")
    assert "the following arguments are required: COMMAND" in err


def test_inbox_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi_sentry.inbox", None)
    assert main(["inbox", "--db", str(tmp_path / "db.sqlite3")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("fastapi-sentry: the inbox needs the inbox extra (")
    assert line.endswith("install it with: pip install 'fastapi-sentry[inbox]'")
    assert not (tmp_path / "db.sqlite3").exists()
