"""Each alert kind, driven through a real inbox by sentry-sdk, notifies a real webhook (or SMTP
server) exactly once per condition episode; the count is taken after the engine has settled."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import sentry_sdk
from sentry_sdk.crons import capture_checkin
from sentry_sdk.crons.consts import MonitorStatus

from fastapi_sentry.inbox import InboxServer
from tests.inbox.monitor_support import Mailbox, Webhook, alerting_inbox, engine, post_events
from tests.inbox_support import init_sdk

if TYPE_CHECKING:
    from sentry_sdk._types import MonitorConfig


def _rule(name: str, when: str, target: str, **fields: object) -> str:
    lines = [f'[[rule]]\nname = "{name}"\nwhen = "{when}"\nnotify = ["{target}"]']
    for key, value in fields.items():
        lines.append(f"{key} = {value!r}".replace("'", '"').replace("True", "true"))
    return "\n".join(lines) + "\n"


def _errors(inbox: InboxServer, count: int, message: str = "database is down", **tags: str) -> None:
    init_sdk(inbox.dsn, environment="production", release="shop@1.0")
    for number in range(count):
        with sentry_sdk.new_scope() as scope:
            scope.set_user({"id": tags.get("user_prefix", "u") + str(number)})
            try:
                raise RuntimeError(message)
            except RuntimeError:
                sentry_sdk.capture_exception()
        if number % 50 == 49:
            sentry_sdk.flush()
    sentry_sdk.flush()


def test_new_issue_fires_once_per_issue_with_the_fields_a_chat_webhook_shows(
    tmp_path: Path,
) -> None:
    with (
        Webhook() as hook,
        alerting_inbox(
            tmp_path, _rule("first-seen", "new_issue", hook.url), token="inbox-secret-token"
        ) as inbox,
    ):
        _errors(inbox, 5)
        inbox.wait_for(5)
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        body = hook.bodies[0]
        (issue,) = inbox.issues()
        assert body["rule"] == "first-seen"
        assert body["kind"] == "new_issue"
        assert body["severity"] == "warning"  # the default
        assert body["text"].startswith("[warning] ")
        assert body["issue_id"] == issue["id"]
        assert body["project"] == "default"
        assert body["count"] == 1
        assert body["title"] == "New issue: RuntimeError: database is down"
        assert body["url"] == f"{inbox.url}/issues/{issue['id']}/?project=1"
        assert body["title"] in body["text"]
        assert body["url"] in body["text"]
        assert httpx.get(
            body["url"], headers={"Authorization": "Bearer inbox-secret-token"}
        ).is_success


def test_event_count_spike_of_500_sends_one_notification(tmp_path: Path) -> None:
    rules = _rule("errors-per-hour", "event_count", "{url}", count=10, window="1h", level="error")
    with Webhook() as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        post_events(inbox, 9, message="below the threshold")
        engine(inbox).settle()
        assert hook.bodies == []
        post_events(inbox, 491, message="the spike")
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        assert hook.bodies[0]["kind"] == "event_count"
        assert hook.bodies[0]["count"] > 10
        assert hook.bodies[0]["issue_id"] is None


def test_event_count_per_issue_and_level_one_critical_error_pages(tmp_path: Path) -> None:
    rules = _rule("critical", "event_count", "{url}", count=0, window="1h", level="fatal")
    rules += _rule("hot-issue", "event_count", "{url}", count=3, window="10m", per_issue=True)
    with Webhook() as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        post_events(inbox, 3, message="warm", level="error")
        post_events(inbox, 4, message="hot", level="error")
        engine(inbox).settle()
        assert [b["rule"] for b in hook.bodies] == ["hot-issue"]
        assert "hot" in hook.bodies[0]["title"]
        post_events(inbox, 2, message="disk on fire", level="fatal")
        engine(inbox).settle()
        assert [b["rule"] for b in hook.bodies] == ["hot-issue", "critical"]


def test_users_affected_fires_once_when_more_than_five_users_hit_the_issue(tmp_path: Path) -> None:
    rules = _rule("users", "users_affected", "{url}", count=5, window="1h")
    with Webhook() as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        _errors(inbox, 5, "checkout failed")
        inbox.wait_for(5)
        engine(inbox).settle()
        assert hook.bodies == []
        _errors(inbox, 12, "checkout failed", user_prefix="v")
        inbox.wait_for(17)
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        # evaluated per cycle, not per event: the count is what the cycle saw (more than 5)
        assert hook.bodies[0]["count"] > 5
        assert hook.bodies[0]["title"] == (
            f"{hook.bodies[0]['count']} users affected in 1h: RuntimeError: checkout failed"
        )
        assert hook.bodies[0]["issue_id"] == inbox.issues()[0]["id"]


def test_regression_fires_when_a_resolved_issue_gets_an_event(tmp_path: Path) -> None:
    with (
        Webhook() as hook,
        alerting_inbox(tmp_path, _rule("came-back", "regression", hook.url)) as inbox,
    ):
        _errors(inbox, 1, "flaky payment")
        (issue,) = inbox.issues()
        response = httpx.put(
            f"{inbox.url}/api/0/issues/{issue['id']}/", json={"status": "resolved"}, timeout=10
        )
        assert response.json()["status"] == "resolved"
        engine(inbox).settle()
        assert hook.bodies == []
        _errors(inbox, 3, "flaky payment")
        inbox.wait_for(4)
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        assert hook.bodies[0]["kind"] == "regression"
        (issue,) = inbox.issues()
        assert issue["status"] == "unresolved"
        assert issue["isRegressed"] is True


def _transaction(name: str, seconds: float) -> None:
    """A transaction lasting ``seconds`` without waiting for them: its end is set explicitly."""
    transaction = sentry_sdk.start_transaction(name=name, op="http.server")
    now = datetime.datetime.now(datetime.timezone.utc)
    transaction.finish(end_timestamp=now + datetime.timedelta(seconds=seconds))


def test_p95_over_threshold_fires_once_for_matching_transactions(tmp_path: Path) -> None:
    rules = _rule(
        "slow-api", "p95", "{url}", transaction="GET /api/*", threshold_ms=2000, window="5m"
    )
    with Webhook() as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        init_sdk(inbox.dsn, traces_sample_rate=1.0)
        for _ in range(19):
            _transaction("GET /api/orders", 0.1)
        _transaction("GET /health", 9.0)  # slow, but not matched by the glob
        sentry_sdk.flush()
        inbox.wait_for(20, type="transaction")
        engine(inbox).settle()
        assert hook.bodies == []
        for _ in range(5):
            _transaction("GET /api/orders", 3.0)
        sentry_sdk.flush()
        inbox.wait_for(25, type="transaction")
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        assert hook.bodies[0]["kind"] == "p95"
        assert hook.bodies[0]["count"] == 24
        assert hook.bodies[0]["url"].endswith("/performance/?project=1")


def test_cron_failed_and_cron_missed_fire_once_per_episode(tmp_path: Path) -> None:
    rules = _rule("cron-failed", "cron_failed", "{url}", monitor="nightly-*")
    rules += _rule("cron-missed", "cron_missed", "{url}")
    config: MonitorConfig = {
        "schedule": {"type": "interval", "value": 1, "unit": "minute"},
        "checkin_margin": 1,
    }
    with Webhook() as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        init_sdk(inbox.dsn)
        capture_checkin("nightly-report", status=MonitorStatus.ERROR, monitor_config=config)
        capture_checkin("nightly-report", status=MonitorStatus.ERROR, monitor_config=config)
        capture_checkin("other-job", status=MonitorStatus.ERROR)  # not matched by the glob
        sentry_sdk.flush()
        inbox.wait_for(3, type="check_in")
        engine(inbox).settle()
        assert [b["rule"] for b in hook.bodies] == ["cron-failed"]
        assert "nightly-report reported error" in hook.bodies[0]["title"]
        # two minutes later (interval + margin) without a check-in, the monitor is missed
        engine(inbox).clock = lambda: time.time() + 181
        engine(inbox).settle()
        engine(inbox).settle()
        assert [b["rule"] for b in hook.bodies] == ["cron-failed", "cron-missed"]
        assert "nightly-report missed its check-in" in hook.bodies[1]["title"]


def test_mailto_target_sends_one_e_mail_through_the_smtp_server(tmp_path: Path) -> None:
    with Mailbox() as mailbox:
        rules = _rule("first-seen", "new_issue", "mailto:oncall@example.com", severity="critical")
        rules += f'[smtp]\nhost = "127.0.0.1"\nport = {mailbox.port}\nfrom = "inbox@example.com"\n'
        with alerting_inbox(tmp_path, rules) as inbox:
            _errors(inbox, 2, "mail me")
            inbox.wait_for(2)
            engine(inbox).settle()
            mailbox.wait(1)
            assert len(mailbox.messages) == 1
            message = mailbox.messages[0]
            assert message["To"] == "oncall@example.com"
            assert message["From"] == "inbox@example.com"
            assert "New issue: RuntimeError: mail me" in message["Subject"]
            assert "[critical]" in message["Subject"]
            assert f"{inbox.url}/issues/" in message.get_content()
            assert "[critical]" in message.get_content()


def test_a_failing_target_is_retried_and_the_result_is_kept(tmp_path: Path) -> None:
    rules = _rule("first-seen", "new_issue", "{url}", severity="critical")
    rules += '[delivery]\nbackoff = "100ms"\n'
    with Webhook(fail=2) as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        _errors(inbox, 1)
        engine(inbox).settle()
        assert hook.attempts == 3
        assert len(hook.bodies) == 1
        assert hook.bodies[0]["severity"] == "critical"
        assert hook.bodies[0]["text"].startswith("[critical] ")
        firings = httpx.get(f"{inbox.url}/api/0/projects/1/alerts/", timeout=10).json()
        assert len(firings) == 1
        assert firings[0]["severity"] == "critical"
        (delivery,) = firings[0]["deliveries"]
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == 3
        assert delivery["target"] == "http://127.0.0.1:{}/…".format(hook.url.split(":")[2][:5])


def test_a_hanging_target_costs_ingest_nothing_then_is_retried_and_delivered(
    tmp_path: Path,
) -> None:
    rules = _rule("first-seen", "new_issue", "{url}")
    rules += '[delivery]\ntimeout = "1s"\nbackoff = "100ms"\nattempts = 10\n'
    with Webhook(hang=True) as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        post_events(inbox, 1, message="first")
        hook.wait(lambda: hook.attempts >= 1)
        # while the webhook hangs, every acknowledged event is stored
        acked = post_events(inbox, 300, message="first")
        stored = {e["eventID"] for e in inbox.events(type="default")}
        assert set(acked) <= stored
        hook.wait(lambda: hook.attempts >= 2)  # the first attempt timed out: a retry
        hook.release()
        engine(inbox).settle(timeout=30)
        assert len(hook.bodies) == 1
        (firing,) = httpx.get(f"{inbox.url}/api/0/projects/1/alerts/", timeout=10).json()
        assert firing["deliveries"][0]["status"] == "delivered"
        assert firing["deliveries"][0]["attempts"] >= 2


def test_notifications_never_carry_the_dsn_key_or_the_token(tmp_path: Path) -> None:
    token = "tok-" + "z" * 30
    with (
        Webhook() as hook,
        alerting_inbox(tmp_path, _rule("first-seen", "new_issue", hook.url), token=token) as inbox,
    ):
        assert inbox.project is not None
        key = inbox.project.public_key
        post_events(inbox, 1, message=f"leaked {key} and {token} in a message")
        engine(inbox).settle()
        (body,) = hook.bodies
        text = str(body)
        assert key not in text
        assert token not in text
        assert "[redacted]" in body["title"]
        firings = httpx.get(
            f"{inbox.url}/api/0/projects/1/alerts/", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert key not in str(firings)
        assert "secret-path" not in str(firings)  # a webhook's path is its secret


def test_an_ignored_issue_pages_nobody_until_it_is_unresolved(tmp_path: Path) -> None:
    rules = _rule("hot-issue", "event_count", "{url}", count=3, window="10m", per_issue=True)
    with Webhook() as hook, alerting_inbox(tmp_path, rules.format(url=hook.url)) as inbox:
        post_events(inbox, 1, message="known noise")
        issue_id = inbox.issues()[0]["id"]
        url = f"{inbox.url}/api/0/issues/{issue_id}/"
        assert httpx.put(url, json={"status": "ignored"}, timeout=10).is_success
        post_events(inbox, 10, message="known noise")
        engine(inbox).settle()
        assert hook.bodies == []
        assert httpx.put(url, json={"status": "unresolved"}, timeout=10).is_success
        post_events(inbox, 10, message="known noise")
        engine(inbox).settle()
        assert len(hook.bodies) == 1
        assert hook.bodies[0]["issue_id"] == issue_id
