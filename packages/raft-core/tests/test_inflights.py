"""The in-flight window: bounded both in messages and in bytes, freed by acknowledgements."""

from __future__ import annotations

from raft_core.inflights import Inflights


def test_new_window_is_empty() -> None:
    window = Inflights(max_count=3, max_bytes=100)
    assert window.count() == 0
    assert window.bytes == 0
    assert not window.full()


def test_count_limit() -> None:
    window = Inflights(max_count=3, max_bytes=1000)
    window.add(1, 10)
    window.add(2, 10)
    assert not window.full()
    window.add(3, 10)
    assert window.full()
    assert window.count() == 3
    assert window.bytes == 30


def test_byte_limit_fills_the_window_before_the_count_limit() -> None:
    window = Inflights(max_count=10, max_bytes=100)
    window.add(1, 60)
    assert not window.full()
    window.add(2, 40)  # exactly at the limit: full
    assert window.full()
    assert window.count() == 2


def test_one_oversized_append_fills_the_window() -> None:
    # A single batch bigger than the byte budget is allowed out (nothing else was in flight), then blocks.
    window = Inflights(max_count=10, max_bytes=100)
    window.add(5, 500)
    assert window.full()
    window.free_le(5)
    assert not window.full()


def test_free_le_frees_every_append_at_or_below_the_index() -> None:
    window = Inflights(max_count=10, max_bytes=1000)
    for last_index, size in [(2, 10), (4, 20), (7, 30), (9, 40)]:
        window.add(last_index, size)
    window.free_le(4)
    assert window.count() == 2
    assert window.bytes == 70
    # An ack between two appends' last indexes frees only the earlier one.
    window.free_le(8)
    assert window.count() == 1
    assert window.bytes == 40
    window.free_le(100)
    assert window.count() == 0
    assert window.bytes == 0


def test_free_le_below_the_oldest_append_frees_nothing() -> None:
    window = Inflights(max_count=10, max_bytes=1000)
    window.add(5, 10)
    window.add(6, 10)
    window.free_le(4)
    assert window.count() == 2
    assert window.bytes == 20
    window.free_le(0)
    assert window.count() == 2


def test_free_le_makes_room_in_a_full_window() -> None:
    window = Inflights(max_count=2, max_bytes=1000)
    window.add(1, 1)
    window.add(2, 1)
    assert window.full()
    window.free_le(1)
    assert not window.full()
    window.add(3, 1)
    assert window.full()


def test_free_le_on_an_empty_window_is_harmless() -> None:
    window = Inflights(max_count=2, max_bytes=10)
    window.free_le(10)
    assert window.count() == 0
    assert window.bytes == 0


def test_reset_forgets_everything() -> None:
    window = Inflights(max_count=2, max_bytes=10)
    window.add(1, 5)
    window.add(2, 5)
    assert window.full()
    window.reset()
    assert window.count() == 0
    assert window.bytes == 0
    assert not window.full()
