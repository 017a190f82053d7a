"""Ctrl-C to `polypref build` says that the build stopped and how to resume it, and nothing else.

A stop ends the shards' thread pool early (the first shard's Interrupted leaves the pool's block), and Prefect's
task runner then cancels a shard that a worker thread was just starting: its engine logged that as a crash,
"Crash detected! Execution was interrupted by an unexpected exception: CancelledError: Task run cancelled by the
task runner", then "Finished in state Crashed(...)". The window is a few milliseconds (about one stop in
twenty showed it on 2 cores), so the build here widens it: the CLI runs with Prefect's check of the cancel event
delayed by a second once a stop was asked for. Everything else is the real build.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_signals import (  # noqa: F401  (no_build_left_behind: an autouse fixture)
    Started,
    _started,
    no_build_left_behind,
    openai_config,
    wait_for_first_micro_batch,
)
from tests.openai_api import ChatAPIServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.process]

# `polypref` with a shard that starts after the stop reaching Prefect's cancel check (prefect/task_engine.py,
# SyncTaskRunEngine.run_context) only once the task runner has had time to cancel it
POLYPREF_WITH_A_SLOW_CANCEL_CHECK = """
import os, sys, time
from polypref import cli, interrupt
from polypref.runners import prefect_server
prefect_server.use_defaults()
from prefect.task_engine import SyncTaskRunEngine
checked = SyncTaskRunEngine.is_cancelled
def is_cancelled(self):
    if interrupt.stop_requested():
        time.sleep(1)
    return checked(self)
SyncTaskRunEngine.is_cancelled = is_cancelled
sys.argv[0] = "polypref"
cli.main()
"""


def start_build(config: Path, out: Path, tag: str) -> Started:
    """As test_signals.start_build (a process group of its own, as a shell starts a job), with the slow check."""
    stdout, stderr = out.parent / f"{tag}.stdout", out.parent / f"{tag}.stderr"
    command = [sys.executable, "-c", POLYPREF_WITH_A_SLOW_CANCEL_CHECK, "build", str(config), "--out", str(out)]
    with stdout.open("w") as o, stderr.open("w") as e:
        process = subprocess.Popen(
            [*command, "--no-progress"], cwd=out.parent, stdout=o, stderr=e, start_new_session=True
        )
    _started.append(process)
    return Started(process, stdout, stderr)


def test_ctrl_c_to_the_process_group_reports_no_crash_of_the_shards_it_cancelled(tiny: dict[str, Path]) -> None:
    for server in serve(ChatAPIServer(delay=0.3)):
        config = openai_config(tiny, server)  # 5 shards, 2 at a time: shards are waiting when the stop comes
        out = tiny["dir"] / "out"
        build = start_build(config, out, "ctrl-c")
        wait_for_first_micro_batch(build, out)

        os.killpg(build.process.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the foreground group
        returncode = build.process.wait(timeout=120)
        stdout, stderr = build.output()

        assert returncode == 130, stdout + stderr
        assert "Traceback" not in stdout + stderr
        assert "Crash detected" not in stderr and "CancelledError" not in stderr and "Crashed" not in stderr, stderr
        counted = r"stopped by SIGINT: (\d+) judgments(?: and \d+ answers [^\n]*)? are saved in "
        saved = re.search(counted + re.escape(str(out)), stderr)
        assert saved and int(saved[1]) > 0, stderr  # what was saved, counted
        assert "to resume, run the same command again: polypref build" in stderr
