"""SIGINT and SIGTERM while a command runs a build (`polypref build`) or serves one (`polypref serve`): the one way
to install handlers (``SignalScope``), to keep them in charge while Prefect runs (``call_off_main_thread``), and to
force an exit (``exit_now``).

Either command stops in two steps. The first signal asks the work to stop where it can keep what it did: a build
stops judging once the micro-batch in flight is saved (``StopOnSignal``, through polypref.interrupt, the flag that
the judging loops below the runners poll); serving stops its runner, which cancels the run in flight
(``StopServing``). A second signal, or a stop that takes too long, ends the process at once with 128 + the signal's
number, after killing what would outlive it: Prefect's server, which runs in a session of its own, and a served
build's flow runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, Protocol, Self

from polypref import interrupt


class Server(Protocol):
    """What a forced exit must stop first: runners.prefect_server.PrefectServer."""

    process: Any  # the server's process, when it is ours (None otherwise)

    def kill(self) -> None: ...


class SignalScope:
    """While the block runs, SIGINT and SIGTERM call ``handle`` (main thread only: signal.signal works only
    there); the handlers before are restored after."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> Self:
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.handle(signal.Signals(signum).name)

    def handle(self, name: str) -> None:
        raise NotImplementedError


class StopOnSignal(SignalScope):
    """SIGINT and SIGTERM during a build: the first asks judging to stop once the micro-batch in flight is
    saved (polypref.interrupt); a second one exits at once, losing only that micro-batch."""

    def __init__(self, server: Server):
        self.server = server

    def __enter__(self) -> Self:
        interrupt.reset()
        return super().__enter__()

    def handle(self, name: str) -> None:
        if interrupt.stop_requested():
            exit_now(f"{name} again: stopping now; the micro-batch in flight is lost", name, self.server)
        interrupt.request_stop(name)
        write_stderr(f"\n{name}: stopping after the micro-batch in flight is saved (again to stop at once)\n")


class StopServing(SignalScope):
    """SIGINT and SIGTERM while serving: the first calls ``stop`` (the run in flight is cancelled); a second one, or
    a stop that takes longer than ``timeout_s`` (``give_up_if_late``), ends the process at once, killing the run in
    flight. ``name`` is the first signal's, which the exit status reports."""

    def __init__(self, server: Server, stop: Callable[[], None], timeout_s: float):
        self.server, self.stop, self.timeout_s = server, stop, timeout_s
        self.name: str | None = None
        self.since: float | None = None

    def handle(self, name: str) -> None:
        if self.name is not None:
            self.force(f"{name} again: stopping now; the run in flight is killed")
        self.name, self.since = name, time.monotonic()
        write_stderr(f"\n{name}: stopping; a run in flight is cancelled (the next run resumes it)\n")
        self.stop()

    def give_up_if_late(self) -> None:
        if self.since is not None and time.monotonic() - self.since > self.timeout_s:
            self.force(f"serving did not stop within {self.timeout_s} s; stopping now")

    def force(self, message: str) -> NoReturn:
        exit_now(message, self.name or "SIGTERM", self.server, children=True)


def exit_now(message: str, name: str, server: Server, children: bool = False) -> NoReturn:
    """The one forced exit: say why, kill this process's children (with ``children``: a served build's flow runs)
    and Prefect's server (outside our process group, and past the atexit hook that would stop it), and end the
    process at once with 128 + the number of signal ``name``."""
    write_stderr(f"\n{message}\n")
    if children:
        process = server.process
        for pid in _child_processes(but=process.pid if process is not None else None):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    server.kill()
    os._exit(128 + signal.Signals[name].value)


def _child_processes(but: int | None) -> list[int]:
    """This process's children (read from Linux's /proc; none elsewhere), except ``but``."""
    me, children = os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if entry.name.isdigit() and int(entry.name) != but:
                    stat = Path(entry.path, "stat").read_text()  # "pid (name) state ppid ...": name may hold ")"
                    if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                        children.append(int(entry.name))
    return children


def call_off_main_thread(
    fn: Callable[[], Any], name: str = "polypref-flow", between: Callable[[], None] | None = None
) -> Any:
    """Run ``fn`` (a flow, or serving) on a worker thread and wait for it, calling ``between`` at each short wait.

    On the main thread, Prefect's flow engine swaps SIGTERM for its own handler while the flow runs
    (prefect/utilities/engine/__init__.py, capture_sigterm), which raises TerminationSignal wherever the
    main thread happens to be and then kills the process with the signal again. Off the main thread it
    cannot install one, so our handlers stay in charge and the stop goes through the saved micro-batch.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # handed to the main thread, which raises it
            result["error"] = e

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)  # short waits: signal handlers run on the main thread between them
        if between is not None:
            between()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def leave_sigint_to_the_main_thread() -> None:
    """Block SIGINT on the calling thread, and so in the processes it starts (they inherit its signal mask): a
    terminal's Ctrl-C (SIGINT to the whole foreground process group) then reaches only this process, whose main
    thread handles it, and not those children."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def write_stderr(text: str) -> None:
    """Tell the terminal, from a signal handler: os.write, not print, since the main thread may be inside a
    write to stderr right now."""
    with contextlib.suppress(OSError, ValueError):  # no usable stderr (closed, or without a descriptor)
        os.write(sys.stderr.fileno(), text.encode())
