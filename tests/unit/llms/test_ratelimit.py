from __future__ import annotations

import asyncio
import random
from email.utils import formatdate

import pytest

from polypref.llms.ratelimit import AdaptiveLimiter, EndpointPool, backoff_delay, parse_duration, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool_of(*limiters: AdaptiveLimiter, clock: Clock | None = None) -> EndpointPool:
    return EndpointPool(list(limiters), clock=clock) if clock else EndpointPool(list(limiters))


def test_aimd_halves_once_per_burst_and_grows_back():
    clock = Clock()
    limiter = AdaptiveLimiter(16, 64, clock=clock)
    pool = pool_of(limiter, clock=clock)

    async def scenario() -> None:
        for _ in range(5):  # a burst of 429s in the same second: one cut
            await pool.release(await pool.acquire(), throttled=True)
        assert limiter.limit == 8
        clock.now += 2
        await pool.release(await pool.acquire(), throttled=True)
        assert limiter.limit == 4
        for _ in range(40):
            await pool.release(await pool.acquire(), success=True)
        assert 9 < limiter.limit < 10  # additive after the first 429: +1/limit per success

    asyncio.run(scenario())
    assert limiter.throttled == 6 and not limiter.slow_start


def test_slow_start_doubles_each_window_until_the_first_refusal():
    clock = Clock()
    limiter = AdaptiveLimiter(16, 100, clock=clock)
    pool = pool_of(limiter, clock=clock)

    async def window() -> None:  # every slot used once, all successes
        taken = [await pool.acquire() for _ in range(int(limiter.limit))]
        for index in taken:
            await pool.release(index, success=True)

    async def scenario() -> None:
        await window()
        assert limiter.limit == 32
        await window()
        assert limiter.limit == 64
        await window()
        assert limiter.limit == 100  # never past max_concurrency
        clock.now += 2
        await pool.release(await pool.acquire(), throttled=True)
        assert limiter.limit == 50
        await window()
        assert 50 < limiter.limit < 52  # congestion avoidance now: about +1 per window

    asyncio.run(scenario())


def test_a_spent_budget_in_the_headers_ends_slow_start():
    limiter = AdaptiveLimiter(4, 64)
    limiter.observe_headers({"x-ratelimit-remaining-requests": "3"})
    assert limiter.slow_start
    limiter.observe_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    assert not limiter.slow_start and limiter.paused_until > 0


def test_in_flight_never_exceeds_the_limit():
    limiter = AdaptiveLimiter(3, 3)
    pool = pool_of(limiter)
    peak = 0

    async def job() -> None:
        nonlocal peak
        index = await pool.acquire()
        peak = max(peak, limiter.in_flight)
        await asyncio.sleep(0.01)
        await pool.release(index, success=True)

    async def main() -> None:
        await asyncio.gather(*(job() for _ in range(20)))

    asyncio.run(main())
    assert peak == 3 and limiter.in_flight == 0
    assert 0 < limiter.mean_in_flight() <= 3


def test_pause_from_headers_holds_new_requests():
    limiter = AdaptiveLimiter(4, 4)
    pool = pool_of(limiter)
    limiter.observe_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "150ms"})

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await pool.acquire()
        return loop.time() - start

    assert asyncio.run(main()) >= 0.12


def test_a_fleet_sends_each_request_to_the_endpoint_with_the_most_free_slots():
    fast, slow = AdaptiveLimiter(4, 4), AdaptiveLimiter(2, 2)
    pool = pool_of(fast, slow)

    async def main() -> list[int]:
        return [await pool.acquire() for _ in range(6)]

    # free slots 4:2 -> fast; 3:2 -> fast; 2:2 -> fast (ties to the first listed); 1:2 -> slow; 1:1 -> fast ...
    assert asyncio.run(main()) == [0, 0, 0, 1, 0, 1]
    assert fast.in_flight == 4 and slow.in_flight == 2 and pool.in_flight == 6 and pool.limit == 6


def test_a_paused_endpoint_gets_nothing_while_another_has_room():
    clock = Clock()
    first, second = AdaptiveLimiter(4, 4, clock=clock), AdaptiveLimiter(4, 4, clock=clock)
    pool = pool_of(first, second, clock=clock)
    first.pause(30)

    async def main() -> list[int]:
        return [await pool.acquire() for _ in range(4)]

    assert asyncio.run(main()) == [1, 1, 1, 1] and first.in_flight == 0


@pytest.mark.parametrize(("text", "seconds"), [("6m0s", 360), ("1.5s", 1.5), ("20ms", 0.02), ("2", 2), ("", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_retry_after_forms():
    assert retry_after({"retry-after": "3"}) == 3
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = formatdate(1_000_030, usegmt=True)
    assert retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(30)
    assert retry_after({}) is None


def test_backoff_has_jitter_and_honours_the_server():
    rng = random.Random(0)
    delays = [backoff_delay(3, 1.0, 60.0, None, rng) for _ in range(200)]
    assert min(delays) >= 0 and max(delays) <= 8 and len(set(delays)) > 100
    hinted = backoff_delay(0, 1.0, 60.0, 5.0, rng)
    assert 5.0 <= hinted <= 5.5


def test_known_limits_space_requests_evenly_whatever_the_server_says():
    clock = Clock()
    limiter = AdaptiveLimiter(64, 64, clock=clock, requests_per_s=10, tokens_per_s=100)
    pool = pool_of(limiter, clock=clock)

    async def scenario() -> None:
        await pool.acquire_unless(None, tokens=5)  # 5 tokens at 100/s: the request limit's 0.1 s is longer
        assert limiter.paused_until == pytest.approx(100.1) and limiter.free(clock.now) == 0
        clock.now = 100.1
        await pool.acquire_unless(None, tokens=50)  # 0.5 s of the token budget
        assert limiter.paused_until == pytest.approx(100.6)
        budget = {"limit": "8", "remaining": "2", "reset": "1s"}  # the server's slower budget paces tighter
        limiter.observe_headers({f"x-ratelimit-{k}-requests": v for k, v in budget.items()})
        clock.now = 100.6
        await pool.acquire()
        assert limiter.paused_until == pytest.approx(100.6 + 1 / 6)

    asyncio.run(scenario())
    assert limiter.in_flight == 3
