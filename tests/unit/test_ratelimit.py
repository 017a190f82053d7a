from __future__ import annotations

import asyncio
import random
from email.utils import formatdate

import pytest

from polypref.judges.ratelimit import AdaptiveLimiter, backoff_delay, parse_duration, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_aimd_halves_once_per_burst_and_grows_back():
    clock = Clock()
    limiter = AdaptiveLimiter(16, 64, clock=clock)

    async def scenario() -> None:
        for _ in range(5):  # a burst of 429s in the same second: one cut
            await limiter.acquire()
            await limiter.release(throttled=True)
        assert limiter.limit == 8
        clock.now += 2
        await limiter.acquire()
        await limiter.release(throttled=True)
        assert limiter.limit == 4
        for _ in range(40):
            await limiter.acquire()
            await limiter.release(success=True)
        assert 9 < limiter.limit < 10  # additive: +1/limit per success

    asyncio.run(scenario())
    assert limiter.throttled == 6


def test_in_flight_never_exceeds_the_limit():
    limiter = AdaptiveLimiter(3, 3)
    peak = 0

    async def job() -> None:
        nonlocal peak
        await limiter.acquire()
        peak = max(peak, limiter.in_flight)
        await asyncio.sleep(0.01)
        await limiter.release(success=True)

    async def main() -> None:
        await asyncio.gather(*(job() for _ in range(20)))

    asyncio.run(main())
    assert peak == 3 and limiter.in_flight == 0
    assert 0 < limiter.mean_in_flight() <= 3


def test_pause_from_headers_holds_new_requests():
    limiter = AdaptiveLimiter(4, 4)
    limiter.observe_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "150ms"})

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await limiter.acquire()
        return loop.time() - start

    assert asyncio.run(main()) >= 0.12


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
