"""Cron alerts from a real Celery beat and worker (sentry-sdk's monitor_beat_tasks) into the inbox:
a task failing every second is one cron_failed notification, and a monitor that stops checking in
is one cron_missed notification once its schedule and margin have passed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.inbox.monitor_support import Webhook, alerting_inbox, engine
from tests.support.receiver import Receiver
from tests.test_celery_worker import CeleryRun, _cleanup_queue

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(180)]

RULES = """
[[rule]]
name = "beat-failed"
when = "cron_failed"
monitor = "beat-fails"
notify = ["{url}"]

[[rule]]
name = "beat-missed"
when = "cron_missed"
monitor = "beat-ok"
notify = ["{url}"]
"""


def test_a_failing_beat_task_notifies_once_and_a_stopped_beat_is_missed(
    tmp_path: Path, redis_url: str, sentry_receiver: Receiver
) -> None:
    with Webhook() as hook, alerting_inbox(tmp_path, RULES.format(url=hook.url)) as inbox:
        run = CeleryRun(sentry_receiver, redis_url, tmp_path)
        run.env["SENTRY_DSN"] = inbox.dsn
        try:
            run.worker()
            beat = run.beat()

            def failures() -> int:
                return sum(
                    1
                    for c in inbox.events(type="check_in")
                    if c.get("monitor_slug") == "beat-fails" and c.get("status") == "error"
                )

            deadline = time.monotonic() + 60
            while failures() < 3:  # the task has failed again and again
                assert time.monotonic() < deadline, run.output()
                time.sleep(0.1)
            beat.stop()
            run.stop_all()
            engine(inbox).settle()
            assert [b["rule"] for b in hook.bodies] == ["beat-failed"]
            assert "beat-fails reported error" in hook.bodies[0]["title"]
            # beat-ok's interval is one minute, its margin one more: later, it is missed
            engine(inbox).clock = lambda: time.time() + 181
            engine(inbox).settle()
            engine(inbox).settle()
            assert [b["rule"] for b in hook.bodies] == ["beat-failed", "beat-missed"]
        finally:
            run.stop_all()
            _cleanup_queue(redis_url, run.queue)
            print(run.output())
