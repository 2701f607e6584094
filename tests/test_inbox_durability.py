"""The inbox as the CLI runs it (``serve()`` in its own process): an acknowledged event survives
kill -9, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.inbox_support import auth_headers, error_event

SERVER = """
import json, sys
from fastapi_sentry.inbox import serve

def ready(info):
    print(json.dumps({"url": info.url, "dsn": info.dsn, "key": info.project.public_key,
                      "id": info.project.id, "token": info.token}), flush=True)

serve(host="127.0.0.1", port=0, db_path=sys.argv[1], token=None, on_ready=ready)
"""


@contextmanager
def server_process(db: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, "the inbox process exited before it was ready"
        yield process, json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _stored_ids(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def test_every_acknowledged_event_survives_kill_9_mid_burst(tmp_path: Path) -> None:
    db = tmp_path / "inbox.db"
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    with server_process(db) as (process, info):
        url = f"{info['url']}/api/{info['id']}/envelope/"

        def sender() -> None:
            with httpx.Client(headers=auth_headers(info["key"]), timeout=5) as client:
                while not stop.is_set():
                    try:
                        response = client.post(url, content=error_event(value="burst"))
                    except httpx.HTTPError:
                        return  # the server is gone
                    if response.status_code == 200:
                        with lock:
                            acked.append(response.json()["id"])

        threads = [threading.Thread(target=sender) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)  # mid-burst: the senders are still sending
        process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads)

    assert len(acked) >= 300
    with server_process(db) as (_, restarted):
        assert restarted["key"] == info["key"]  # same database, same project and DSN
        stored = _stored_ids(db)
        lost = [event_id for event_id in acked if event_id not in stored]
        assert lost == [], f"{len(lost)} of {len(acked)} acknowledged events were lost"
        response = httpx.post(
            f"{restarted['url']}/api/{restarted['id']}/envelope/",
            content=error_event(value="after restart"),
            headers=auth_headers(restarted["key"]),
            timeout=10,
        )
        assert response.status_code == 200


def test_serve_reports_where_it_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    with server_process(tmp_path / "inbox.db") as (process, info):
        assert info["dsn"] == f"http://{info['key']}@{info['url'].removeprefix('http://')}/1"
        assert info["token"] is None  # loopback: no token needed
        assert httpx.get(info["url"] + "/api/0/projects/", timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
