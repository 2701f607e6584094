"""In-app is right: the app's frames are in-app, the framework's never, wherever it is installed.

The hard case is a checkout: fastapi-sentry (editable install) and here Starlette and FastAPI too
live under the project root, where sentry-sdk's own rule (under the working directory, outside
site-packages) marks them in-app. The app below runs that way under plain uvicorn, sends to the
inbox, and its error goes through a dependency, our request path, Starlette and anyio.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx
from sentry_sdk.utils import set_in_app_in_frames

from fastapi_sentry import SentrySettings
from fastapi_sentry._setup import in_app_options
from fastapi_sentry.inbox import InboxServer
from tests.support.plain_uvicorn import SRC, plain_uvicorn

DEPS = """
def load_order(order_id: int) -> dict[str, int]:
    return _lookup(order_id)


def _lookup(order_id: int) -> dict[str, int]:
    raise LookupError(f"order {order_id} vanished")
"""

MAIN = """
import os
from fastapi import Depends, FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

import fastapi_sentry
from myapp.deps import load_order

app = FastAPI()
fastapi_sentry.install(app)
if os.environ.get("DEEP"):  # two more Starlette middlewares: more library frames, same app
    app.add_middleware(GZipMiddleware)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1"])


@app.get("/orders/{order_id}")
def get_order(order: dict[str, int] = Depends(load_order)) -> dict[str, int]:
    return order
"""


def _checkout(root: Path) -> None:
    """A project root holding the app and, as in a checkout, the libraries' source."""
    (root / "myapp").mkdir()
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "deps.py").write_text(DEPS)
    (root / "myapp" / "main.py").write_text(MAIN)
    libs = root / "src"
    libs.mkdir()
    (libs / "fastapi_sentry").symlink_to(SRC / "fastapi_sentry")
    for name in ("starlette", "fastapi"):
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        (libs / name).symlink_to(Path(spec.origin).parent)


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    (exc,) = event["exception"]["values"]
    frames: list[dict[str, Any]] = exc["stacktrace"]["frames"]
    return frames


def _raise_once(root: Path, inbox: InboxServer, deep: bool, count: int) -> dict[str, Any]:
    env = {"SENTRY_DSN": inbox.dsn, "SENTRY_ENVIRONMENT": "test"}
    if deep:
        env["DEEP"] = "1"
    with plain_uvicorn(
        "myapp.main:app", cwd=root, env=env, pythonpath=[root / "src", root]
    ) as server:
        assert httpx.get(server.url + "/orders/7", timeout=10).status_code == 500
        events = inbox.wait_for(count, timeout=20)
    return events[-1]


def test_only_the_apps_frames_are_in_app_and_library_frames_do_not_split_the_issue(
    tmp_path: Path, inbox: InboxServer
) -> None:
    _checkout(tmp_path)
    plain = _raise_once(tmp_path, inbox, deep=False, count=1)
    deep = _raise_once(tmp_path, inbox, deep=True, count=2)

    for event in (plain, deep):
        frames = _frames(event)
        in_app = [(f["module"], f["function"]) for f in frames if f.get("in_app") is True]
        assert in_app == [("myapp.deps", "load_order"), ("myapp.deps", "_lookup")]
        modules = {f.get("module", "").split(".")[0] for f in frames}
        assert {"fastapi_sentry", "starlette", "fastapi", "anyio"} <= modules
        # the libraries really were under the project root: sentry-sdk's rule alone says in-app
        under_root = [f for f in frames if f.get("abs_path", "").startswith(str(tmp_path / "src"))]
        assert {f["module"].split(".")[0] for f in under_root} == {
            "fastapi_sentry",
            "starlette",
            "fastapi",
        }
    starlette_frames = [
        len([f for f in _frames(e) if f["module"].startswith("starlette.")]) for e in (plain, deep)
    ]
    assert starlette_frames[0] < starlette_frames[1]
    # one issue: grouping reads the in-app frames only
    (issue,) = inbox.issues()
    assert issue["count"] == "2"


def _marked(settings: SentrySettings, frames: list[dict[str, Any]], root: str) -> list[Any]:
    options = in_app_options(settings)
    set_in_app_in_frames(frames, options["in_app_exclude"], options["in_app_include"], root)
    return [f.get("in_app") for f in frames]


def test_include_and_exclude_settings_reach_sentry_sdk() -> None:
    root = "/srv/app"
    site = "/usr/lib/python3.11/site-packages"

    def frames() -> list[dict[str, Any]]:
        return [
            {"module": "myservice.api", "abs_path": f"{site}/myservice/api.py"},
            {"module": "myservice.vendored.sdk", "abs_path": f"{root}/myservice/vendored/sdk.py"},
            {"module": "fastapi_sentry._helpers", "abs_path": f"{root}/src/fastapi_sentry/x.py"},
            {"module": "uvicorn.server", "abs_path": f"{root}/uvicorn/server.py"},
            {"module": "fastapi_sentry.examples.shop.app", "abs_path": f"{site}/e/shop.py"},
            {"module": "jobs.run", "abs_path": f"{root}/jobs/run.py"},
        ]

    default = SentrySettings()
    assert _marked(default, frames(), root) == [False, True, False, False, True, True]
    configured = SentrySettings(
        in_app_include=["myservice"], in_app_exclude=["myservice.vendored", "jobs"]
    )
    # include wins over exclude (sentry-sdk's order): the app names itself, then carves out
    assert _marked(configured, frames(), root) == [True, True, False, False, True, False]
