"""How far a build is: the units of work it needs (responses to generate, survey questions, judgments, the
persona-free run's judgments), each counted once it is resolved, asked or found saved, under one total.

The core reports as it goes (``advance``) to the tracker the command installed (``tracking``); with none
installed (a test, a worker process of a distributed build) reporting costs nothing. Plain Python, no Prefect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

GENERATING, FIDELITY, JUDGING = "generating responses", "fidelity questions", "judging"


@dataclass
class Snapshot:
    phase: str  # what the build is doing now: the phase that last advanced, or the first one not done
    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """A plain line for a log or a terminal without a progress bar."""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        return f"progress: {self.phase} {self.done:,}/{self.total:,}{share}, {self.rate:,.0f}/s, {self.seconds:.0f} s"


@dataclass
class Tracker:
    """Totals and resolved units per phase. Thread-safe: shards run on a pool, the head start on a thread."""

    totals: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _last: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def expect(self, phase: str, total: int) -> None:
        with self._lock:
            self.totals[phase] = total

    def advance(self, phase: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.done[phase] = self.done.get(phase, 0) + n
            self._last = phase

    def snapshot(self, floor: dict[str, int] | None = None) -> Snapshot:
        """Where the build is; ``floor``: counts read off the folder (a distributed build's workers report to no
        tracker here), taken where they are ahead."""
        with self._lock:
            done = {p: min(max(self.done.get(p, 0), (floor or {}).get(p, 0)), t) for p, t in self.totals.items()}
            phase = self._last or next((p for p, t in self.totals.items() if done[p] < t), JUDGING)
            return Snapshot(phase, sum(done.values()), sum(self.totals.values()), time.monotonic() - self.started)


_current: Tracker | None = None


@contextmanager
def tracking(tracker: Tracker) -> Iterator[Tracker]:
    """Install ``tracker`` for the block: what the core reports in this process goes to it."""
    global _current
    previous, _current = _current, tracker
    try:
        yield tracker
    finally:
        _current = previous


def expect(phase: str, total: int) -> None:
    if _current is not None:
        _current.expect(phase, total)


def advance(phase: str, n: int) -> None:
    if _current is not None:
        _current.advance(phase, n)
