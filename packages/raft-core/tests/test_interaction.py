"""Golden interaction scripts (tests/testdata/interaction/*.txt), run by ``raft_core.testing.interaction``.

When one fails, read the diff: if the new behaviour is right, run ``pytest --rewrite`` and review every changed
line of the golden file before committing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raft_core.testing.interaction import HANDLERS, Command, InteractionEnv, run_script

SCRIPTS = sorted((Path(__file__).parent / "testdata" / "interaction").glob("*.txt"))


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) >= 7


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_interaction(path: Path, request: pytest.FixtureRequest) -> None:
    expected = path.read_text(encoding="utf-8")
    actual = run_script(expected)
    if request.config.getoption("--rewrite", default=False):
        path.write_text(actual, encoding="utf-8")
        return
    assert actual == expected


# The runner itself.


def test_command_parsing() -> None:
    command = Command.parse("add-nodes 3 pre_vote=true check_quorum=false")
    assert command == Command("add-nodes", ["3"], {"pre_vote": "true", "check_quorum": "false"})
    assert Command.parse("deliver-msgs 1 2 drop=3").ids() == [1, 2]


def test_every_command_has_a_documented_handler() -> None:
    for name, handler in HANDLERS.items():
        assert handler.__doc__ is not None
        assert handler.__doc__.startswith(f"``{name}"), name


def test_run_script_replaces_outputs_and_keeps_comments() -> None:
    script = "# three nodes\nadd-nodes 3\n----\nstale\n\nraft-state\n----\n"
    assert run_script(script) == (
        "# three nodes\nadd-nodes 3\n----\nok\n\nraft-state\n----\n"
        "1: follower term=0 lead=0 commit=0 applied=0\n"
        "2: follower term=0 lead=0 commit=0 applied=0\n"
        "3: follower term=0 lead=0 commit=0 applied=0\n"
    )


def test_a_command_without_separator_is_a_script_error() -> None:
    with pytest.raises(ValueError, match="----"):
        run_script("add-nodes 3\nraft-state\n----\n")


def test_unknown_commands_and_nodes_are_script_errors() -> None:
    env = InteractionEnv()
    with pytest.raises(ValueError, match="unknown command"):
        env.handle("frobnicate 1")
    env.handle("add-nodes 1")
    with pytest.raises(ValueError, match="no node 7"):
        env.handle("campaign 7")


def test_raft_errors_are_printed() -> None:
    env = InteractionEnv()
    env.handle("add-nodes 3")
    assert env.handle("propose 1 x").startswith("error: NotLeader:")


def test_messages_wait_in_flight_until_delivered() -> None:
    env = InteractionEnv()
    env.handle("add-nodes 3 pre_vote=false")
    env.handle("campaign 1")
    env.handle("process-ready 1")
    assert sorted(m.dst for m in env.in_flight) == [2, 3]
    # Node 2 learns of term 1 from the vote request: it logs that it follows at the new term.
    assert env.handle("deliver-msgs 2") == "1->2 RequestVote term=1 log=0/0\nINFO node 2 became follower at term 1"
    assert [m.dst for m in env.in_flight] == [3]
    assert env.handle("deliver-msgs drop=3") == "dropped: 1->3 RequestVote term=1 log=0/0"
    assert env.in_flight == []
