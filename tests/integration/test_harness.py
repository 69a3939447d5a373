"""The harness on its own (no KV server): the history checkers and process control with a fake node."""

from __future__ import annotations

import math
import signal
import sys
import textwrap
import time

import pytest
from harness import History, NodeProcess, Op, Outcome, ProcessFailed, check_final_state, check_linearizable, run


def op(kind: str, key: str, start: float, end: float, *, value=None, result=None, outcome=Outcome.OK, expected=None):
    return Op("t", kind, key, value, expected, start=start, end=end, outcome=outcome, result=result)


def hist(*ops: Op) -> History:
    return History(list(ops))


# -- final state ------------------------------------------------------------------------------------------------


def test_final_state_accepts_the_last_acknowledged_write():
    h = hist(op("put", "a", 0, 1, value="1"), op("put", "a", 2, 3, value="2"))
    check_final_state(h, {"a": "2"})


def test_final_state_detects_a_lost_acknowledged_write():
    h = hist(op("put", "a", 0, 1, value="1"), op("put", "a", 2, 3, value="2"))
    with pytest.raises(AssertionError, match="later acknowledged writes were lost"):
        check_final_state(h, {"a": "1"})
    with pytest.raises(AssertionError, match="no write of that value"):
        check_final_state(h, {"a": None})


def test_final_state_detects_a_value_nobody_wrote():
    with pytest.raises(AssertionError, match="no call ever wrote"):
        check_final_state(hist(op("put", "a", 0, 1, value="1")), {"a": "zzz"})


def test_final_state_allows_an_unknown_write_to_win_or_vanish():
    unknown = op("put", "a", 2, math.inf, value="2", outcome=Outcome.UNKNOWN)
    h = hist(op("put", "a", 0, 1, value="1"), unknown)
    check_final_state(h, {"a": "2"})
    check_final_state(h, {"a": "1"})
    check_final_state(hist(unknown), {"a": None})


def test_final_state_concurrent_writes_either_order():
    h = hist(op("put", "a", 0, 2, value="1"), op("put", "a", 1, 3, value="2"))
    check_final_state(h, {"a": "1"})
    check_final_state(h, {"a": "2"})


# -- linearizability --------------------------------------------------------------------------------------------


def test_linearizable_register_history():
    h = hist(
        op("put", "a", 0, 1, value="1"),
        op("get", "a", 2, 3, result="1"),
        op("put", "a", 4, 6, value="2"),
        op("get", "a", 5, 7, result="1"),  # concurrent with the put: old value fine
        op("get", "a", 8, 9, result="2"),
        op("cas", "a", 10, 11, expected="2", value="3", result=True),
        op("cas", "a", 12, 13, expected="2", value="4", result=False),
        op("delete", "a", 14, 15),
        op("get", "a", 16, 17, result=None),
    )
    assert check_linearizable(h) == 1


def test_stale_read_is_not_linearizable():
    h = hist(op("put", "a", 0, 1, value="1"), op("put", "a", 2, 3, value="2"), op("get", "a", 4, 5, result="1"))
    with pytest.raises(AssertionError, match="not linearizable"):
        check_linearizable(h)


def test_read_of_an_unwritten_value_is_not_linearizable():
    with pytest.raises(AssertionError, match="not linearizable"):
        check_linearizable(hist(op("get", "a", 0, 1, result="x")))


def test_unknown_write_may_take_effect_late_or_never():
    late = hist(
        op("put", "a", 0, math.inf, value="1", outcome=Outcome.UNKNOWN),
        op("get", "a", 5, 6, result=None),
        op("get", "a", 7, 8, result="1"),
    )
    check_linearizable(late)
    never = hist(op("put", "a", 0, math.inf, value="1", outcome=Outcome.UNKNOWN), op("get", "a", 5, 6, result=None))
    check_linearizable(never)
    flicker = hist(
        op("put", "a", 0, math.inf, value="1", outcome=Outcome.UNKNOWN),
        op("get", "a", 5, 6, result="1"),
        op("get", "a", 7, 8, result=None),
    )
    with pytest.raises(AssertionError):
        check_linearizable(flicker)


def test_many_concurrent_writers_stay_tractable():
    ops = []
    t = 0.0
    for round_ in range(60):
        for w in range(6):
            ops.append(op("put", "k", t + w * 0.01, t + 1, value=f"{round_}-{w}"))
        ops.append(op("get", "k", t + 1.5, t + 1.6, result=f"{round_}-3"))
        t += 2
    check_linearizable(hist(*ops))


# -- process control --------------------------------------------------------------------------------------------

FAKE_NODE = textwrap.dedent(
    """
    import signal, sys, time
    if "--fail" in sys.argv:
        print("boom", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    time.sleep(0.2)
    print("fake node serving on 127.0.0.2:1", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def fake(tmp_path, *extra: str) -> NodeProcess:
    script = tmp_path / "fake_node.py"
    script.write_text(FAKE_NODE)
    return NodeProcess(
        1, [sys.executable, str(script), *extra], tmp_path / "logs" / "n1.log", ready_marker="serving on"
    )


def test_process_start_stop_kill_restart_and_log(tmp_path):
    proc = fake(tmp_path)

    async def main() -> None:
        line = await proc.start(timeout=10)
        assert "serving on" in line
        assert await proc.stop() == 0
        await proc.restart(timeout=10)
        pid = proc.pid
        proc.pause()
        assert proc.state == "paused"
        proc.resume()
        await proc.kill()
        assert proc.state == f"exited({-signal.SIGKILL})"
        assert pid is not None
        await proc.restart(timeout=10)
        assert proc.starts == 3
        # A ready line from an earlier start does not count for the next one.
        assert proc.output_since_start().count("serving on") == 1
        await proc.kill()

    try:
        run(main(), 60)
    finally:
        proc.force_cleanup()
    text = proc.log_path.read_text()
    assert text.count("==== harness: start #") == 3


def test_process_that_exits_early_fails_with_its_log(tmp_path):
    proc = fake(tmp_path, "--fail")
    with pytest.raises(ProcessFailed, match="boom"):
        run(proc.start(timeout=10), 30)


def test_process_that_never_serves_fails_at_its_deadline(tmp_path):
    proc = NodeProcess(1, [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "n.log", ready_marker="x")
    try:
        with pytest.raises(ProcessFailed, match="not serving after"):
            run(proc.start(timeout=0.5), 30)
    finally:
        proc.force_cleanup()
    assert not proc.alive


def test_long_history_with_many_unknown_writes_stays_tractable():
    ops = []
    t = 0.0
    value = "init"
    ops.append(op("put", "k", -2, -1, value=value))
    for round_ in range(300):
        # An unknown write that never lands, one that does, and a read that sees the one that did.
        ops.append(op("put", "k", t, math.inf, value=f"lost-{round_}", outcome=Outcome.UNKNOWN))
        ops.append(op("put", "k", t + 0.1, math.inf, value=f"landed-{round_}", outcome=Outcome.UNKNOWN))
        ops.append(op("put", "k", t + 0.2, t + 0.5, value=f"ok-{round_}"))
        ops.append(op("get", "k", t + 0.6, t + 0.7, result=f"ok-{round_}"))
        ops.append(op("get", "k", t + 0.8, t + 0.9, result=f"landed-{round_}"))
        t += 1
    started = time.monotonic()
    check_linearizable(hist(*ops))
    assert time.monotonic() - started < 10
