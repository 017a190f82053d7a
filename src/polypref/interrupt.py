"""A process-wide stop request: signal handlers set it, judging loops check it between micro-batches.

Plain threading, no Prefect: the pipeline and judges stop at the next saved micro-batch, whoever runs them.
"""

from __future__ import annotations

import threading

_stop = threading.Event()
_signal_name: list[str] = []


def request_stop(signal_name: str = "SIGINT") -> None:
    if not _signal_name:
        _signal_name.append(signal_name)
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def signal_name() -> str:
    return _signal_name[0] if _signal_name else "SIGINT"


def reset() -> None:
    """Forget a stop request (tests, and a long-lived process that runs several builds)."""
    _signal_name.clear()
    _stop.clear()
