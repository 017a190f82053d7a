"""Issue 25, item 4: Ctrl-C during the fidelity questions of `polypref build` keeps the answers that came, and the
rerun asks the server only the questions not answered before; the stop message says only what is saved.

The real CLI in a subprocess (its own process group, as a shell starts it), Prefect, and the OpenAI backend
against ``ChatAPIServer`` answering slowly enough to be interrupted mid-check (tests/integration/test_signals.py
has the helpers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from polypref.build.state import BuildState
from polypref.fidelity.store import answers_saved
from tests.conftest import polypref_command
from tests.integration.test_signals import (  # noqa: F401  (no_build_left_behind: an autouse fixture)
    PERSONAS,
    STARTUP_S,
    Started,
    no_build_left_behind,
    openai_config,
    run_build,
    start_build,
)
from tests.openai_api import ChatAPIServer, prefer_the_longer, request_kind, serve

pytestmark = [pytest.mark.integration, pytest.mark.process]

QUESTIONS = PERSONAS * 2 + 2  # every persona on the tiny survey's two topics, and each topic without a persona


def saved_answers(out: Path) -> int:
    return answers_saved(BuildState(out).fidelity_dir)


def wait_for_answers(build: Started, server: ChatAPIServer) -> None:
    """Until the head start's first micro-batch was answered (the second is sent), while Prefect still boots."""
    deadline = time.monotonic() + STARTUP_S
    while len(surveyed(server)) <= 4:
        assert build.process.poll() is None, "the build ended before the stop: " + "\n".join(build.output())
        assert time.monotonic() < deadline, "no question was answered in time"
        time.sleep(0.02)


def surveyed(server: ChatAPIServer) -> list[str]:
    """The survey questions the server was asked, in order (each as its messages)."""
    return [json.dumps(b["messages"], sort_keys=True) for b in server.bodies if request_kind(b) == "survey"]


def stop_during_the_check(server: ChatAPIServer, config: Path, out: Path) -> tuple[int, str]:
    """Start the build, Ctrl-C it once some answers are saved; (answers saved, its stderr)."""
    server.delay = 0.5  # micro-batches of 4 at 4 in flight: the 42 questions would take ~5 s
    build = start_build(config, out, "stopped")
    wait_for_answers(build, server)
    os.killpg(build.process.pid, signal.SIGINT)
    returncode = build.process.wait(timeout=120)
    stdout, stderr = build.output()
    assert returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    kept = saved_answers(out)
    assert 0 < kept == len(surveyed(server)) < QUESTIONS  # every answer that came is saved, and no more
    server.delay = 0
    return kept, stderr


def assert_the_rerun_asks_only_the_rest(server: ChatAPIServer, config: Path, out: Path, kept: int) -> None:
    before = surveyed(server)
    again = run_build(config, out)
    assert again.returncode == 0, again.stdout + again.stderr
    after = surveyed(server)[len(before) :]
    assert set(before).isdisjoint(after)  # no question answered before is asked again
    # the rest, once each (two personas with the same portrayal ask the same question: one answer serves both)
    assert len(after) == len(set(after)) and 0 < len(after) <= QUESTIONS - kept
    figures = json.loads((out / ".polypref" / "fidelity.json").read_text())["report"]["counts"]
    assert figures["answered"] == figures["asked"] == PERSONAS * 2 and figures["no_answer"] == 0


def test_a_stop_during_the_check_keeps_its_answers_and_the_rerun_asks_only_the_rest(tiny: dict[str, Path]) -> None:
    for server in serve(ChatAPIServer(reply=prefer_the_longer)):
        config = openai_config(tiny, server)
        out = tiny["dir"] / "out"
        # a folder that holds a build already (the simulator's, which asks no endpoint)
        command = ["build", str(config), "--out", str(out), "--no-progress", "--set", "judge={backend: simulated}"]
        simulated = subprocess.run(
            polypref_command(*command),
            cwd=tiny["dir"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        kept, _ = stop_during_the_check(server, config, out)
        assert_the_rerun_asks_only_the_rest(server, config, out, kept)


def test_a_stop_during_the_check_of_a_new_build_says_what_is_saved_and_the_rerun_asks_the_rest(
    tiny: dict[str, Path],
) -> None:
    """The issue's case: the first build into a new folder, stopped while the fidelity questions go out."""
    for server in serve(ChatAPIServer(reply=prefer_the_longer)):
        config = openai_config(tiny, server)
        out = tiny["dir"] / "out"
        kept, stderr = stop_during_the_check(server, config, out)
        assert f"stopped by SIGINT: {kept} answers to the fidelity check's questions are saved in {out}" in stderr
        assert "judgments finished so far" not in stderr  # none was: the check comes before judging
        assert_the_rerun_asks_only_the_rest(server, config, out, kept)
