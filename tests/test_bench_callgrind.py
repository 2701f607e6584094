"""benchmarks/callgrind.py: a count comes only from a child that finished its work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")

#: A child that prints its work and then fails: callgrind still reports a total for it.
FAILING_CHILD = (
    "import sys; print('half done'); sys.stderr.write('the child broke\\n'); sys.exit(3)"
)


def test_a_child_that_exits_non_zero_gives_no_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import callgrind

    with pytest.raises(RuntimeError, match="exited with 3") as raised:
        callgrind.count_instructions(["-S", "-c", FAILING_CHILD])
    message = str(raised.value)
    assert message.endswith("the child broke")  # the child's own stderr, valgrind's lines left out
    assert "==" not in message


def test_a_child_that_succeeds_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import callgrind

    assert callgrind.count_instructions(["-S", "-c", "print('done')"]) > 1_000_000


def test_a_dsn_key_in_the_childs_arguments_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import callgrind

    dsn = "http://secretkey123@127.0.0.1:9/1"
    with pytest.raises(RuntimeError, match="exited with 3") as raised:
        callgrind.count_instructions(["-S", "-c", FAILING_CHILD, "--dsn", dsn])
    assert "secretkey123" not in str(raised.value)
    assert "http://***@127.0.0.1:9/1" in str(raised.value)
