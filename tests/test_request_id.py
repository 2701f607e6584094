"""The request id made when none came in: unique within a process and across forked workers."""

from __future__ import annotations

import os
import re

from fastapi_sentry._context import new_request_id


def test_new_request_ids_look_like_uuid4_hex_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_a_forked_worker_never_repeats_its_parents_request_ids() -> None:
    """Gunicorn and uvicorn's `--workers` fork after import: the counter is copied with the
    process, so only a new prefix in the child keeps the ids apart."""
    before = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, " ".join(new_request_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_request_id() for _ in range(3)]
    assert len(child) == 3
    assert not set(child) & set(parent)
    assert {request_id[:20] for request_id in child} != {before[:20]}
