"""Adaptive concurrency for remote judges: AIMD on throttling, pauses from rate-limit headers, jittered backoff.

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


class AdaptiveLimiter:
    """At most ``limit`` requests in flight; the limit halves on a 429 and grows by 1/limit per success.

    Waiting for a slot has no timeout on purpose: a slow self-hosted endpoint should be waited for, not
    abandoned. ``pause`` holds new requests back until a rate-limit window resets.
    """

    def __init__(
        self, initial: int, maximum: int, minimum: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = float(max(minimum, min(initial, maximum)))
        self.minimum, self.maximum = minimum, maximum
        self.in_flight = 0
        self._clock = clock
        self._paused_until = 0.0
        self._last_decrease = -1e9
        self._cond: asyncio.Condition | None = None
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

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # made on first use, inside the event loop that will wait on it
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        cond = self._condition()
        async with cond:
            while True:
                wait = self._paused_until - self._clock()
                if wait <= 0 and self.in_flight < int(self.limit):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cond.wait(), timeout=wait if wait > 0 else None)
            self._tick()
            self.in_flight += 1

    async def release(self, throttled: bool = False, success: bool = False) -> None:
        cond = self._condition()
        async with cond:
            self._tick()
            self.in_flight -= 1
            now = self._clock()
            if throttled:
                self.throttled += 1
                if now - self._last_decrease > 1.0:  # one cut per burst of 429s, not one per request
                    self.limit = max(self.minimum, self.limit / 2)
                    self.lowest_limit = min(self.lowest_limit, self.limit)
                    self._last_decrease = now
            elif success:
                self.limit = min(self.maximum, self.limit + 1 / self.limit)
            cond.notify_all()

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Pause when the server says the request or token budget of this window is spent."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
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
    one, else full-jitter exponential backoff (uniform in [0, min(cap, base * 2**attempt)])."""
    if server_hint is not None:
        return min(cap, server_hint) + rng.uniform(0, min(1.0, 0.1 * max(server_hint, 0.1)))
    return rng.uniform(0, min(cap, base * 2**attempt))
