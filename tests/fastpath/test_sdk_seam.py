"""The seam to sentry-sdk's private names, and the fallback when it does not hold."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sentry_sdk

import fastapi_sentry
from fastapi_sentry._fastpath import _sdk_seam

PACKAGE = Path(fastapi_sentry.__file__).parent
ROOT = Path(__file__).resolve().parents[2]


def _private_sdk_imports(path: Path) -> list[str]:
    """`from sentry_sdk... import _name` and `import sentry_sdk._x` in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sentry_sdk"):
            module_private = any(part.startswith("_") for part in node.module.split("."))  # type: ignore[union-attr]
            for alias in node.names:
                if module_private or alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sentry_sdk" and any(p.startswith("_") for p in parts):
                    found.append(alias.name)
    return found


def test_only_the_seam_imports_private_sentry_sdk_names() -> None:
    seam = PACKAGE / "_fastpath" / "_sdk_seam.py"
    offenders = {
        str(path.relative_to(PACKAGE)): names
        for path in PACKAGE.rglob("*.py")
        if path != seam and (names := _private_sdk_imports(path))
    }
    assert offenders == {}
    assert len(_private_sdk_imports(seam)) >= 10  # the check above can see what it looks for


def test_the_installed_sdk_passes_the_seam() -> None:
    assert _sdk_seam.PROBLEM is None


def test_an_untested_sdk_version_is_refused_unless_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sentry_sdk.consts, "VERSION", "2.99.0")
    problem = _sdk_seam._check()
    assert problem is not None
    assert "2.99.0" in problem
    assert "2.75" in problem
    monkeypatch.setenv(_sdk_seam.UNTESTED_SDK_VARIABLE, "1")
    assert _sdk_seam._check() is None


def test_a_missing_private_name_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    class Baggage:  # a release in which Baggage lost the method the sampler reads
        populate_from_propagation_context = None

    monkeypatch.setattr(_sdk_seam, "Baggage", Baggage)
    assert _sdk_seam._check() == "sentry-sdk's Baggage has no _sample_rand"


_FALLBACK_SCRIPT = """
import json, logging, sentry_sdk
from fastapi import FastAPI
from fastapi.testclient import TestClient
import fastapi_sentry
from fastapi_sentry._fastpath import _sdk_seam
from fastapi_sentry.testing import capture_envelopes

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("fastapi_sentry").addHandler(handler)
logging.getLogger("fastapi_sentry").setLevel(logging.INFO)
_sdk_seam.PROBLEM = "sentry-sdk 9.9 is not one it was tested with"
app = FastAPI()

@app.get("/boom")
def boom():
    raise RuntimeError("boom")

with capture_envelopes() as sent:
    fastapi_sentry.install(app, dsn="https://public@sentry.example.com/1")
    fastapi_sentry.install(FastAPI(), dsn="https://public@sentry.example.com/1")
    client = sentry_sdk.get_client()
    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.get("/boom", headers={"x-request-id": "req-42"})
print(json.dumps({
    "warnings": [r.getMessage() for r in records if r.levelno == logging.WARNING],
    "integrations": sorted(client.integrations),
    "status": response.status_code,
    "request_id": response.headers.get("x-request-id"),
    "errors": sent.errors,
}))
"""


def test_fallback_logs_one_warning_and_uses_the_sdks_integrations() -> None:
    # sentry-sdk sets integrations up once per process: the fallback needs a fresh interpreter
    done = subprocess.run(
        [sys.executable, "-c", _FALLBACK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")},
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    (warning,) = seen["warnings"]  # one, though install() ran twice
    assert "sentry-sdk 9.9 is not one it was tested with" in warning
    assert {"starlette", "fastapi"} <= set(seen["integrations"])
    assert (seen["status"], seen["request_id"]) == (500, "req-42")
    (error,) = seen["errors"]
    assert error["tags"]["request_id"] == "req-42"
    assert error["tags"]["endpoint"] == "GET /boom"
    assert error["transaction"] == "/boom"
    assert error["exception"]["values"][-1]["mechanism"]["type"] == "starlette"


@pytest.mark.slow
def test_install_and_request_path_tests_pass_on_the_fallback() -> None:
    """The install and request-path suites, run again with the lean path forced off."""
    suites = [
        "tests/test_install.py",
        "tests/fastpath/test_request_path.py",
        "tests/fastpath/test_stream.py",
        "tests/fastpath/test_transport.py",
        "tests/test_graphql.py",
        "tests/test_error_responses.py",
        "tests/test_safe_text.py",
        "tests/test_request_timing.py",
    ]
    env = {**os.environ, "FASTAPI_SENTRY_TEST_FALLBACK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *suites],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in summary
    assert " deselected" in summary  # the lean-only tests, not collected
    assert "skipped" not in summary
    assert "failed" not in summary
