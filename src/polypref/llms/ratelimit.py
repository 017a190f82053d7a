"""Adaptive concurrency for remote judges: slow start then AIMD on throttling, per endpoint of a fleet; pauses
from rate-limit headers; jittered backoff.

Pure asyncio and stdlib, no HTTP: the OpenAI backend feeds it outcomes and headers, tests drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
CATCH_UP_S = 0.25  # how far behind its schedule a paced endpoint may start requests back to back


class AdaptiveLimiter:
    """One endpoint's concurrency limit: it doubles every window of successes until the first 429 (slow start,
    as TCP does: a fresh build reaches a fast server's capacity in a few windows, not one request per window),
    then halves on a 429 and grows by 1/limit per success (AIMD).

    The state and arithmetic only; ``EndpointPool`` does the waiting. ``pause`` holds new requests back until a
    rate-limit window resets. ``requests_per_s`` and ``tokens_per_s``: limits the user knows the endpoint holds
    (``judge.max_requests_per_minute``, ``judge.max_tokens_per_minute``): requests start evenly spaced under
    them, whatever the server says, so a server that says nothing (no x-ratelimit-* headers, as vLLM's and most
    gateways) is never run into.
    """

    def __init__(
        self,
        initial: int,
        maximum: int,
        minimum: int = 1,
        clock: Callable[[], float] = time.monotonic,
        requests_per_s: float | None = None,
        tokens_per_s: float | None = None,
    ) -> None:
        self.requests_per_s, self.tokens_per_s = requests_per_s, tokens_per_s
        self.limit = float(max(minimum, min(initial, maximum)))
        self.minimum, self.maximum = minimum, maximum
        self.in_flight = 0
        self.slow_start = True  # until the server first pushes back
        self.paused_until = 0.0
        self.rate: float | None = None  # requests per second to pace at, once the server's budget runs low
        self._clock = clock
        self._last_decrease = -1e9
        self._start = self._since = clock()
        self._area_in_flight = 0.0  # integral of in_flight dt, for the mean
        self._area_limit = 0.0
        self.throttled = 0
        self.lowest_limit = self.limit

    def _tick(self) -> None:
        now = self._clock()
        dt = now - self._since
        self._area_in_flight += self.in_flight * dt
        self._area_limit += int(self.limit) * dt
        self._since = now

    def free(self, now: float) -> int:
        """Requests this endpoint may take now: 0 while paused."""
        return 0 if self.paused_until > now else max(0, int(self.limit) - self.in_flight)

    def take(self, tokens: int = 0) -> None:
        """A request of ``tokens`` (its prompt and max_tokens, for a token limit) starts now."""
        self._tick()
        self.in_flight += 1
        told = max(
            1 / self.requests_per_s if self.requests_per_s else 0.0,
            tokens / self.tokens_per_s if self.tokens_per_s and tokens else 0.0,
        )
        heard = 1 / self.rate if self.rate else 0.0
        if not (told or heard):
            return
        # the next request may start one interval after this one's slot. Under a limit the user told us, a
        # waiter woken late makes its lag up (CATCH_UP_S at most, which a server's bucket absorbs), or the mean
        # rate would fall short of the limit by every wake-up's latency; a rate read off the headers is
        # measured from the server's own state, so it never runs ahead of it
        now = self._clock()
        behind = told >= heard and self.paused_until >= now - CATCH_UP_S
        self.paused_until = (self.paused_until if behind else max(self.paused_until, now)) + max(told, heard)

    def give(self, throttled: bool = False, success: bool = False) -> None:
        self._tick()
        self.in_flight -= 1
        now = self._clock()
        if throttled:
            self.throttled += 1
            self.slow_start = False
            if now - self._last_decrease > 1.0:  # one cut per burst of 429s, not one per request
                self.limit = max(self.minimum, self.limit / 2)
                self.lowest_limit = min(self.lowest_limit, self.limit)
                self._last_decrease = now
        elif success:
            self.limit = min(self.maximum, self.limit + (1 if self.slow_start else 1 / self.limit))

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.paused_until = max(self.paused_until, self._clock() + seconds)

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Pace requests once the server says its request budget is more than half spent, at the rate the
        budget refills ((limit - remaining) / reset: exact for a token bucket, as OpenAI's limits are); pause
        when the request or token budget is spent (and stop growing fast: the budget, not the server's speed,
        is the limit now)."""
        budget = _number(headers.get("x-ratelimit-limit-requests"))
        left = _number(headers.get("x-ratelimit-remaining-requests"))
        refill = parse_duration(headers.get("x-ratelimit-reset-requests"))
        if budget is not None and left is not None:
            spent = budget - left
            self.rate = spent / refill if left <= budget / 2 and spent > 0 and refill else None
            if self.rate:
                self.slow_start = False
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                self.slow_start = False
                self.pause(parse_duration(headers.get(f"x-ratelimit-reset-{kind}")) or 1.0)

    def start_clock(self) -> None:
        """Measure from now (benchmarks call it just before the work they time)."""
        self._start = self._since = self._clock()
        self._area_in_flight = self._area_limit = 0.0

    def mean_in_flight(self) -> float:
        """Time-averaged requests in flight since the limiter was made."""
        self._tick()
        return self._area_in_flight / max(self._since - self._start, 1e-9)

    def mean_limit(self) -> float:
        """Time-averaged concurrency limit: mean_in_flight / mean_limit says how busy we kept the endpoint."""
        self._tick()
        return self._area_limit / max(self._since - self._start, 1e-9)


class EndpointPool:
    """Endpoints serving one model (one, or a fleet such as one vLLM server per GPU), each with its own
    ``AdaptiveLimiter``. A request waits for a free slot and takes the endpoint with the most free slots (the
    fewest in flight against its limit; ties to the first listed), so a slow or throttled endpoint gets less.

    Waiting has no timeout on purpose: a slow self-hosted endpoint should be waited for, not abandoned.
    """

    def __init__(self, limiters: list[AdaptiveLimiter], clock: Callable[[], float] = time.monotonic) -> None:
        if not limiters:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.limiters = limiters
        self._clock = clock
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # made on first use, inside the event loop that will wait on it
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> int:
        """Wait for a slot; the index of the endpoint it is on."""
        index = await self.acquire_unless(None)
        assert index is not None  # nothing to stop it
        return index

    async def acquire_unless(self, stop: asyncio.Event | None, tokens: int = 0) -> int | None:
        """``acquire``, or None once ``stop`` is set (``wake`` makes waiters look): a run that is stopping sends
        nothing new, and must not wait out a rate-limit pause first. ``tokens``: what the request will count
        against a token limit."""
        cond = self._condition()
        async with cond:
            while True:
                if stop is not None and stop.is_set():
                    return None
                now = self._clock()
                free = [limiter.free(now) for limiter in self.limiters]
                best = max(range(len(free)), key=lambda i: (free[i], -i))
                if free[best] > 0:
                    self.limiters[best].take(tokens)
                    return best
                paused = [limiter.paused_until - now for limiter in self.limiters if limiter.paused_until > now]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cond.wait(), timeout=min(paused) if paused else None)

    async def release(self, index: int, throttled: bool = False, success: bool = False) -> None:
        cond = self._condition()
        async with cond:
            self.limiters[index].give(throttled=throttled, success=success)
            cond.notify_all()

    async def wake(self) -> None:
        """Make every waiter look again (a stop was requested)."""
        cond = self._condition()
        async with cond:
            cond.notify_all()

    # figures over the whole pool, for the summary, benchmarks and tests
    @property
    def limit(self) -> float:
        return sum(limiter.limit for limiter in self.limiters)

    @property
    def in_flight(self) -> int:
        return sum(limiter.in_flight for limiter in self.limiters)

    @property
    def throttled(self) -> int:
        return sum(limiter.throttled for limiter in self.limiters)

    @property
    def lowest_limit(self) -> float:
        return min(limiter.lowest_limit for limiter in self.limiters)

    def start_clock(self) -> None:
        for limiter in self.limiters:
            limiter.start_clock()

    def mean_in_flight(self) -> float:
        return sum(limiter.mean_in_flight() for limiter in self.limiters)

    def mean_limit(self) -> float:
        return sum(limiter.mean_limit() for limiter in self.limiters)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def parse_duration(text: str | None) -> float | None:
    """'6m0s', '1.5s', '20ms', '30' -> seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNIT_S[u] for n, u in parts) if parts else None


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, Retry-After seconds, or Retry-After HTTP date."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, server_hint: float | None, rng: random.Random) -> float:
    """How long to wait before retry ``attempt`` (0-based): the server's hint plus a little jitter when it gave
    one (both capped: a capped wait must not come back as jitter), else full-jitter exponential backoff (uniform in
    [0, min(cap, base * 2**attempt)])."""
    if server_hint is not None:
        wait = min(cap, server_hint)
        return wait + rng.uniform(0, min(1.0, 0.1 * max(wait, 0.1)))
    return rng.uniform(0, min(cap, base * 2**attempt))


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; whether it was. A backoff must not hold a stop up for
    minutes (a build once needed 430 s to end after Ctrl-C, waiting out its retries' backoff)."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


def retry_note(wait: float, asked: float | None, cap: float) -> str:
    """'retrying in 60 s (the server asked for 100000 s; capped)': the wait actually taken, and the server's ask
    when the cap cut it short, so a log never claims a wait that does not happen."""
    note = f"retrying in {_seconds(wait)} s"
    if asked is not None and asked > cap:
        note += f" (the server asked for {_seconds(asked)} s; capped)"
    return note


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
