"""Tests of the virtual-time event loop: timers jump instead of sleeping, and asyncio's primitives still work."""

from __future__ import annotations

import asyncio
import time

import pytest

from raft_core.testing.virtual_loop import VirtualDeadlock, VirtualLoop, current_virtual_loop, run_virtual


def test_sleep_costs_no_wall_time():
    async def main() -> float:
        loop = current_virtual_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    began = time.perf_counter()
    assert run_virtual(main()) == pytest.approx(3600)
    assert time.perf_counter() - began < 1.0


def test_timers_fire_in_order_of_their_deadlines():
    async def main() -> list[tuple[str, float]]:
        loop = current_virtual_loop()
        start = loop.time()
        fired: list[tuple[str, float]] = []

        async def at(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            fired.append((name, round(loop.time() - start, 6)))

        await asyncio.gather(at("c", 3.0), at("a", 1.0), at("b", 2.0), at("a2", 1.0))
        return fired

    assert run_virtual(main()) == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]


def test_wait_for_and_timeout_expire_on_the_virtual_clock():
    async def main() -> tuple[bool, bool, float]:
        loop = current_virtual_loop()
        start = loop.time()
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.sleep(100), 5)
        except TimeoutError:
            timed_out = True
        cm_timed_out = False
        try:
            async with asyncio.timeout(2):
                await asyncio.Event().wait()
        except TimeoutError:
            cm_timed_out = True
        return timed_out, cm_timed_out, loop.time() - start

    timed_out, cm_timed_out, elapsed = run_virtual(main())
    assert timed_out and cm_timed_out
    assert elapsed == pytest.approx(7.0)


def test_futures_and_tasks_resolve_across_timers():
    async def main() -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        loop.call_later(10, future.set_result, 42)
        task = loop.create_task(asyncio.sleep(5, result=1))
        return await future + await task

    assert run_virtual(main()) == 43


def test_a_loop_with_nothing_to_wait_for_raises_instead_of_hanging():
    async def main() -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever resolve it

    with pytest.raises(VirtualDeadlock):
        run_virtual(main())


def test_clock_ms_follows_the_virtual_time():
    async def main() -> tuple[int, int]:
        loop = current_virtual_loop()
        before = loop.clock_ms()
        await asyncio.sleep(1.5)
        return before, loop.clock_ms()

    before, after = run_virtual(main())
    assert after - before == 1500


def test_runs_are_deterministic_for_a_seed():
    async def main() -> list[int]:
        loop = current_virtual_loop()
        order: list[int] = []

        async def worker(k: int) -> None:
            for _ in range(5):
                await asyncio.sleep(loop.rng.random())
                order.append(k)

        await asyncio.gather(*(worker(k) for k in range(4)))
        return order

    assert run_virtual(main(), seed=3) == run_virtual(main(), seed=3)
    assert run_virtual(main(), seed=3) != run_virtual(main(), seed=4)


def test_current_virtual_loop_refuses_an_ordinary_loop():
    async def main() -> None:
        current_virtual_loop()

    with pytest.raises(RuntimeError, match="VirtualLoop"):
        asyncio.run(main())


def test_the_loop_is_closed_after_run_virtual():
    loops: list[VirtualLoop] = []

    async def main() -> None:
        loops.append(current_virtual_loop())

    run_virtual(main())
    assert loops[0].is_closed()
