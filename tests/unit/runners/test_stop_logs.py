"""The console filter keeps a stop's own cancellations quiet, and nothing else: real crashes are still reported.

The end to end check (a real build, Ctrl-C to its process group) is tests/integration/test_signals_quiet.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from polypref import interrupt
from polypref.runners.prefect_server import OurErrorsFilter

# what prefect/task_engine.py logs for a task run that its task runner cancelled as it started
CANCELLED = (
    "Execution was interrupted by an unexpected exception: CancelledError: Task run cancelled by the task runner"
)
CANCELLED_LINES = [f"Crash detected! {CANCELLED}", f"Finished in state Crashed('{CANCELLED}')"]


def shown(message: str, logger: str = "prefect.task_runs") -> bool:
    return OurErrorsFilter().filter(logging.LogRecord(logger, logging.ERROR, __file__, 1, message, None, None))


@pytest.fixture(autouse=True)
def no_stop_left_behind() -> Iterator[None]:
    interrupt.reset()
    yield
    interrupt.reset()


@pytest.mark.parametrize("message", CANCELLED_LINES)
def test_a_shard_that_our_stop_cancelled_is_not_reported_as_a_crash(message: str) -> None:
    interrupt.request_stop("SIGINT")
    assert not shown(message)


@pytest.mark.parametrize("message", CANCELLED_LINES)
def test_a_cancelled_shard_is_still_reported_when_no_stop_was_asked_for(message: str) -> None:
    assert shown(message)


@pytest.mark.parametrize(
    "message",
    [
        "Crash detected! Request to http://127.0.0.1:4200/api/task_runs/ failed: ConnectError: refused.",
        "Crash detected! Execution was aborted by an interrupt signal.",
    ],
)
def test_a_real_crash_during_a_stop_is_still_reported(message: str) -> None:
    interrupt.request_stop("SIGINT")
    assert shown(message)


def test_other_loggers_are_left_alone() -> None:
    interrupt.request_stop("SIGINT")
    assert shown(CANCELLED_LINES[0], logger="prefect.task_runner")
