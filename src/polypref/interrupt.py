"""A process-wide stop request: signal handlers set it, judging loops check it between micro-batches.

Plain threading, no Prefect: the pipeline and judges stop at the next saved micro-batch, whoever runs them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_stop = threading.Event()
_thread = threading.local()
_signal_name: list[str] = []


def request_stop(signal_name: str = "SIGINT") -> None:
    if not _signal_name:
        _signal_name.append(signal_name)
    _stop.set()


def stop_requested() -> bool:
    """A signal asked the process to stop, or the work this thread does was called off (``stopped_by``)."""
    called_off = getattr(_thread, "called_off", None)
    return _stop.is_set() or (called_off is not None and called_off.is_set())


@contextlib.contextmanager
def stopped_by(called_off: threading.Event) -> Iterator[None]:
    """In the block, this thread's judging loops also stop (``Interrupted``) once ``called_off`` is set: work
    that nobody will take any more (an unused head start), while the rest of the process goes on."""
    _thread.called_off = called_off
    try:
        yield
    finally:
        del _thread.called_off


def signal_name() -> str:
    return _signal_name[0] if _signal_name else "SIGINT"


def reset() -> None:
    """Forget a stop request (tests, and a long-lived process that runs several builds)."""
    _signal_name.clear()
    _stop.clear()
