"""Grouping rules, as pure functions: what makes two events one issue."""

from __future__ import annotations

from typing import Any

from fastapi_sentry.inbox._grouping import group_event, user_key


def _error(
    frames: list[tuple[str, str, int, bool]], exc_type: str = "ValueError", value: str = "x"
) -> dict[str, Any]:
    return {
        "exception": {
            "values": [
                {
                    "type": exc_type,
                    "value": value,
                    "stacktrace": {
                        "frames": [
                            {"module": m, "function": f, "lineno": n, "in_app": a}
                            for m, f, n, a in frames
                        ]
                    },
                }
            ]
        }
    }


APP = [("starlette.routing", "handle", 10, False), ("shop.views", "checkout", 42, True)]


def test_line_numbers_and_values_do_not_split_an_issue() -> None:
    moved = [("starlette.routing", "handle", 99, False), ("shop.views", "checkout", 57, True)]
    assert group_event(_error(APP, value="a")).hash == group_event(_error(moved, value="b")).hash


def test_a_different_in_app_function_or_type_is_a_different_issue() -> None:
    other_function = [APP[0], ("shop.views", "refund", 42, True)]
    assert group_event(_error(APP)).hash != group_event(_error(other_function)).hash
    assert group_event(_error(APP)).hash != group_event(_error(APP, exc_type="KeyError")).hash


def test_library_frames_do_not_matter_when_there_are_in_app_frames() -> None:
    other_library = [("uvicorn.protocols", "run", 1, False), APP[1]]
    assert group_event(_error(APP)).hash == group_event(_error(other_library)).hash


def test_without_in_app_frames_the_whole_stack_counts() -> None:
    a = [("lib.a", "f", 1, False)]
    b = [("lib.b", "f", 1, False)]
    assert group_event(_error(a)).hash != group_event(_error(b)).hash


def test_an_explicit_fingerprint_wins_and_can_extend_the_default() -> None:
    first = {**_error(APP), "fingerprint": ["payments-down"]}
    second = {
        **_error([("other", "thing", 1, True)], exc_type="KeyError"),
        "fingerprint": ["payments-down"],
    }
    assert group_event(first).hash == group_event(second).hash
    extended_a = {**_error(APP), "fingerprint": ["{{ default }}", "tenant-a"]}
    extended_b = {**_error(APP), "fingerprint": ["{{ default }}", "tenant-b"]}
    assert group_event(extended_a).hash != group_event(extended_b).hash
    assert group_event(extended_a).hash != group_event(_error(APP)).hash


def test_messages_group_by_template_without_parameters() -> None:
    a = {"logentry": {"message": "order %s failed", "params": [1], "formatted": "order 1 failed"}}
    b = {"logentry": {"message": "order %s failed", "params": [2], "formatted": "order 2 failed"}}
    assert group_event(a).hash == group_event(b).hash
    assert group_event(a).title == "order 1 failed"
    assert group_event(a).type == "default"
    assert group_event({"message": "plain"}).hash != group_event(a).hash


def test_message_title_fills_in_params_when_the_sdk_sent_no_formatted_text() -> None:
    # sentry-cli's `send-event -m "Hello %s" -a world` sends only the template and params;
    # Sentry shows "Hello world" (tests/compat/ checks the same against Relay itself).
    cli = {"logentry": {"message": "Hello %s", "params": ["world"]}}
    assert group_event(cli).title == "Hello world"
    assert group_event({"logentry": {"message": "{0} of {1}", "params": [3, 4]}}).title == "3 of 4"
    # a placeholder without its parameter keeps the template, as Relay does
    assert group_event({"logentry": {"message": "%s and %s", "params": ["a"]}}).title == (
        "%s and %s"
    )
    # the template still groups: other parameters, same issue
    other = {"logentry": {"message": "Hello %s", "params": ["there"]}}
    assert group_event(other).hash == group_event(cli).hash


def test_a_synthetic_exception_is_titled_by_its_crash_function_like_sentry() -> None:
    # @sentry/node's captureMessage attaches a made-up stack trace marked synthetic
    frames = [
        {"function": "Module._load", "filename": "node:internal/loader", "in_app": False},
        {"function": "main", "filename": "/srv/job.cjs", "in_app": True},
        {"function": "?", "filename": "/srv/job.cjs", "in_app": True},
    ]
    synthetic: dict[str, Any] = {
        "message": "stock low",
        "exception": {
            "values": [
                {
                    "value": "stock low",
                    "stacktrace": {"frames": frames},
                    "mechanism": {"type": "generic", "synthetic": True},
                }
            ]
        },
    }
    group = group_event(synthetic)
    assert group.title == "main"
    assert group.culprit == ""
    assert group.metadata == {"value": "stock low", "function": "main"}
    # no named in-app frame: the type and value, as Sentry falls back to
    synthetic["exception"]["values"][0]["stacktrace"] = {"frames": frames[:1]}
    assert group_event(synthetic).title == "Error: stock low"


def test_title_culprit_and_level() -> None:
    group = group_event({**_error(APP, value="bad\nsecond line"), "level": "warning"})
    assert group.title == "ValueError: bad"
    assert group.culprit == "shop.views in checkout"
    assert group.level == "warning"
    assert group.type == "error"
    with_transaction = {**_error(APP), "transaction": "POST /checkout", "level": "nonsense"}
    assert group_event(with_transaction).culprit == "POST /checkout"
    assert group_event(with_transaction).level == "error"


def test_odd_shapes_never_raise() -> None:
    for event in (
        {},
        {"exception": "x"},
        {"exception": {"values": [1, None, {"stacktrace": {"frames": "no"}}]}},
        {"exception": [{"type": 5}]},
        {"fingerprint": [None, {"a": 1}, 3]},
        {"message": {"formatted": "dict message"}},
        {"logentry": "string"},
    ):
        assert len(group_event(event).hash) == 40


def test_user_key_prefers_id_then_username_email_ip() -> None:
    assert user_key({"user": {"id": 7, "email": "a@b"}}) == "id:7"
    assert user_key({"user": {"email": "a@b", "ip_address": "1.2.3.4"}}) == "email:a@b"
    assert user_key({"user": {"ip_address": "1.2.3.4"}}) == "ip_address:1.2.3.4"
    assert user_key({"user": "nobody"}) is None


def test_percentiles_are_nearest_rank() -> None:
    from fastapi_sentry.inbox._store import percentile

    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0
