"""Running the Prefect build flow from a terminal, so that Ctrl-C and SIGTERM stop it cleanly.

Three things Prefect 3.7.7 does not do for a command-line build: keep its ephemeral API server out of the
terminal's process group (so Ctrl-C reaches only the build), leave signal handling to the caller (its flow
engine replaces SIGTERM's handler on the main thread: runners.signals.call_off_main_thread, with the handlers
themselves), and keep our own errors' tracebacks off the console. Tied to the pinned Prefect version: recheck when
it moves.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from polypref import assets, interrupt
from polypref.errors import PolyprefError

# Prefect's ephemeral server needs ~29 s to migrate a fresh database on 2 cores (stack notes §1.1), and
# telemetry would log errors offline. Users' own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
    "VLLM_LOGGING_LEVEL": "WARNING",  # the engine's INFO lines would bury the progress bar
    "VLLM_LOGGING_STREAM": "ext://sys.stderr",  # not stdout, which `--json -` keeps for the JSON alone
}


def use_defaults() -> None:
    """PREFECT_DEFAULTS, where the environment does not set them: before Prefect is imported (it reads them once)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


@functools.cache
def load_flow(entrypoint: str) -> Any:
    """A flow of flows/ (``"build.py:build_dataset"``), as the CLI and `serve` load it: once per process (loading
    runs the flow file and makes Prefect derive each flow's parameter schema, ~0.25 s a time)."""
    from prefect.flows import load_flow_from_entrypoint

    file, _, name = entrypoint.partition(":")
    # use_placeholder_flow=False: an import error in the flow file must surface, not become a stub flow
    return load_flow_from_entrypoint(f"{assets.path('flows', file)}:{name}", use_placeholder_flow=False)


class OurErrorsFilter(logging.Filter):
    """Drops Prefect's console reports of runs that ended in a PolyprefError, or that a stop we asked for cancelled.

    Prefect logs such an ending once per task ("Finished in state Failed('Task run encountered an exception
    Interrupted: ...')") and once more for the flow, with a traceback; the CLI prints the one message that
    matters. A stop also ends the shards' thread pool early, and Prefect's task runner then cancels a shard that
    a worker thread was just starting, which its engine reports as a crash ("Crash detected! ... CancelledError:
    Task run cancelled by the task runner", "Finished in state Crashed(...)"): not one, since we stopped it. Only
    console handlers get this filter: Prefect's API handler still records every line for its UI.
    """

    RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
    CANCELLED_BY_TASK_RUNNER = "CancelledError: Task run cancelled by the task runner"  # prefect/task_engine.py

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.RUN_LOGGERS):
            return True
        if record.exc_info and isinstance(record.exc_info[1], PolyprefError):
            return False
        message = record.getMessage()
        if self.CANCELLED_BY_TASK_RUNNER in message and interrupt.stop_requested():
            return False
        return _our_error_names().search(message) is None


@cache
def _our_error_names() -> re.Pattern[str]:
    """How Prefect's messages name a PolyprefError (every subclass is defined once errors.py is imported)."""
    names = "|".join(sorted(_subclass_names(PolyprefError)))
    return re.compile(rf"\bexception:? (?:{names})\b")


def _subclass_names(cls: type) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _subclass_names(sub)
    return names


def quiet_console_about_our_errors() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, OurErrorsFilter) for f in handler.filters
        ):
            handler.addFilter(OurErrorsFilter())


class PrefectServer:
    """Prefect's ephemeral API server, started by us in its own session.

    Prefect starts it as a plain child (prefect/server/api/server.py, SubprocessASGIServer), so a terminal's
    Ctrl-C (SIGINT to the whole foreground process group) or a scheduler's SIGTERM to the group kills it in
    the middle of the build, and the build then retries a dead API for minutes. In its own session it hears
    only us: Prefect's own atexit hook stops it once the build has ended.

    ``launch`` starts its process at once, before Prefect is even imported here; ``start`` waits for it. The
    server takes ~3 s to answer, which a build spends checking its inputs and importing Prefect instead of
    waiting after them (benchmarks/startup.py: 7.6 -> 4.8-5.5 s from the command to the first judge request).
    """

    def __init__(self) -> None:
        self.process: Any = None
        self._launched: tuple[int, subprocess.Popen[Any]] | None = None  # (port, process) from launch

    def launch(self) -> None:
        """Start the server's process, not waiting for it to answer. Nothing to start where PREFECT_API_URL
        is set or this process already runs the server (Prefect's default instance: in-process reruns)."""
        if os.environ.get("PREFECT_API_URL") or self._launched is not None:
            return
        started = sys.modules.get("prefect.server.api.server")
        if started is not None and None in started.SubprocessASGIServer._instances:
            return
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._launched = port, _launch_server(port, {})

    def start(self) -> None:
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():  # a real server (set in a Prefect profile, say): nothing of ours to run
            self.kill_launched()
            return
        server = _own_session_server_class(self._launched)()
        if server.port is None and self._launched is not None:
            server.port = self._launched[0]
        server.start()  # registered as Prefect's default instance, so every Prefect client uses this one
        self.process = server.server_process
        if self._launched is not None and self._launched[1] is not self.process:
            self.kill_launched()  # not used: its port was taken, or a server was already running
        self._launched = None  # the server is Prefect's now: its atexit hook stops it

    def kill_launched(self) -> None:
        """Stop a launched process that will not serve (the build stopped before starting it), and forget it."""
        launched, self._launched = self._launched, None
        if launched is not None and launched[1].poll() is None:
            launched[1].terminate()

    def kill(self) -> None:
        """For a forced exit, which skips Prefect's atexit hook: the server is outside our process group."""
        self.kill_launched()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()


def own_server_url() -> str:
    """The API URL of the ephemeral server PrefectServer started (other processes of the build reach it there)."""
    from prefect.server.api.server import SubprocessASGIServer

    # PrefectServer registered its server as Prefect's default instance (port None), so this returns it
    return SubprocessASGIServer().api_url


# Outside our process group, the server would outlive a build killed with SIGKILL (or a group kill that we
# no longer share) and keep Prefect's database open; it stops itself gracefully once its parent is gone.
_SERVER_LAUNCHER = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def _launch_server(port: int, settings: dict[str, str]) -> subprocess.Popen[Any]:
    """The command and environment of prefect 3.7.7's SubprocessASGIServer._run_uvicorn_command
    (server.py:1196), run through _SERVER_LAUNCHER, in a session of its own. ``settings``: the Prefect settings
    set in this process beyond its environment, which a process launched before Prefect loads has none of."""
    package = importlib.util.find_spec("prefect")  # its folder, without importing Prefect (~0.7 s)
    assert package is not None and package.submodule_search_locations is not None
    return subprocess.Popen(
        args=[
            sys.executable,
            "-c",
            _SERVER_LAUNCHER,
            str(os.getpid()),
            "--app-dir",
            str(Path(next(iter(package.submodule_search_locations))).parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env={
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **settings,
        },
        start_new_session=True,
    )


def _own_session_server_class(launched: tuple[int, subprocess.Popen[Any]] | None = None) -> type:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class OwnSessionServer(SubprocessASGIServer):
        # SubprocessASGIServer() returns the instance registered for its port; this one registers under the
        # default (None), so Prefect's clients find it already running and do not start another.
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            nonlocal launched
            if launched is not None and launched[0] == self.port and launched[1].poll() is None:
                process, launched = launched[1], None  # launched early, on this port: Prefect waits for it
                return process
            return _launch_server(self.port, get_current_settings().to_environment_variables(exclude_unset=True))

    return OwnSessionServer
