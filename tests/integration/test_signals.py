"""Stopping `polypref build` as terminals and schedulers do: SIGINT or SIGTERM, to the build or its process group.

The build judges with the OpenAI backend against ``ChatAPIServer`` (tests/openai_api.py), a stand-in for a
remote OpenAI-compatible API on 127.0.0.1 that answers slowly enough to be interrupted. Everything else is
real: the CLI in a subprocess, Prefect's flow and ephemeral server, the judge, the saved micro-batches and the
resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psutil
import pytest
import yaml

from polypref.build.state import BuildState
from tests.conftest import polypref_command, prefect_servers_under
from tests.openai_api import ChatAPIServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.process]

PERSONAS = 20
UNITS = PERSONAS * 6 * 2  # the tiny items give 6 pairs, each judged in both orders
SHARDS = 5  # 48 units per shard: 4 personas of 12 units each
STARTUP_S = 240  # the session's first Prefect start migrates a fresh database (~30 s on 2 cores)


@pytest.fixture
def chat_server() -> Iterator[ChatAPIServer]:
    # micro-batches of 4 at 4 in flight: one every ~0.3 s, so the whole build would take ~20 s
    yield from serve(ChatAPIServer(delay=0.3))


def openai_config(tiny: dict[str, Path], server: ChatAPIServer, workers: int = 2, **judge: object) -> Path:
    """A build config over the tiny survey, judged by the OpenAI backend at ``server``."""
    config = tiny["dir"] / "openai-build.yaml"
    settings = {
        "backend": "openai",
        "model": "stand-in-model",
        "base_url": server.base_url,
        "api_key_env": None,
        "micro_batch": 4,
        "concurrency": 4,
        "max_concurrency": 4,
        "max_retries": 0,
        "timeout_s": 60,
        **judge,
    }
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "population": {"spec": str(tiny["spec"]), "size": PERSONAS},
                "items": {"source": str(tiny["items"])},
                "judge": settings,
                "output": {"units_per_shard": 48, "row_group_rows": 1000, "workers": workers},
                # every persona asked each question once: these tests count the check's questions so
                "fidelity": {"samples": 1, "budget": None},
            }
        )
    )
    return config


@dataclass
class Started:
    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_build_left_behind() -> Iterator[None]:
    """A failed test must not leave its build (or the Prefect server it started) running."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: start_build made it a session leader
            process.wait(timeout=30)


def start_build(config: Path, out: Path, tag: str) -> Started:
    """`polypref build` in a new session, as a shell starts a foreground job: its own process group."""
    stdout, stderr = out.parent / f"{tag}.stdout", out.parent / f"{tag}.stderr"
    with stdout.open("w") as o, stderr.open("w") as e:
        process = subprocess.Popen(
            polypref_command("build", str(config), "--out", str(out), "--no-progress"),
            cwd=out.parent,
            stdout=o,
            stderr=e,
            start_new_session=True,
        )
    _started.append(process)
    return Started(process, stdout, stderr)


def run_build(config: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        polypref_command("build", str(config), "--out", str(out), "--no-progress"),
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_for_first_micro_batch(build: Started, out: Path) -> None:
    state = BuildState(out)
    deadline = time.monotonic() + STARTUP_S
    while state.stored_judgments() == 0:
        assert build.process.poll() is None, "the build ended before judging anything: " + "\n".join(build.output())
        assert time.monotonic() < deadline, "no micro-batch was saved in time"
        time.sleep(0.05)


def prefect_server_of(build: Started) -> psutil.Process:
    """Prefect's ephemeral API server that this build started (a child running uvicorn)."""
    servers = prefect_servers_under(build.process.pid)
    assert servers, "the build runs no Prefect server of its own"
    return servers[0]


def saved_micro_batches(out: Path) -> list[pl.DataFrame]:
    """The micro-batches a build saved in its judgment store, one frame each."""
    return [pl.read_parquet(p) for p in sorted((BuildState(out).store_dir).glob("*/[!.]*.parquet"))]


@pytest.mark.parametrize(
    ("signum", "target", "status"),
    [
        (signal.SIGINT, "process", 130),  # kill -INT PID
        (signal.SIGTERM, "process", 143),  # a scheduler stopping the job
        (signal.SIGINT, "group", 130),  # Ctrl-C in a terminal: every process of the foreground group
    ],
    ids=["sigint-pid", "sigterm-pid", "sigint-group"],
)
def test_signal_saves_work_stops_promptly_and_the_same_command_resumes(
    tiny: dict[str, Path],
    chat_server: ChatAPIServer,
    signum: int,
    target: str,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if target == "group":  # Ctrl-C in a terminal, with the server the command boots for itself
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
    config = openai_config(tiny, chat_server)
    out = tiny["dir"] / "out"
    build = start_build(config, out, "interrupted")
    wait_for_first_micro_batch(build, out)

    sent = time.monotonic()
    if target == "group":
        os.killpg(build.process.pid, signum)
    else:
        build.process.send_signal(signum)
    returncode = build.process.wait(timeout=120)
    took = time.monotonic() - sent
    stdout, stderr = build.output()

    assert returncode == status, stdout + stderr
    assert took < 15, f"stopping took {took:.1f} s"
    assert "Traceback" not in stdout + stderr
    assert "run the same command again" in stderr and f"--out {out}" in stderr
    assert "built" not in stdout  # an unfinished build does not report itself as built
    saved = BuildState(out).stored_judgments()
    assert saved_micro_batches(out) and 0 < saved < UNITS
    # every answer the build received is saved: none is paid for twice (the fidelity check's answers, asked
    # before judging, are saved with the build as well: the rerun asks none again)
    assert chat_server.asked("judgment") == saved == chat_server.requests - chat_server.asked("survey")

    chat_server.delay = 0
    asked_before, surveyed = chat_server.asked("judgment"), chat_server.asked("survey")
    again = run_build(config, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert f"{PERSONAS} personas, {UNITS} judgments" in again.stdout
    assert f"reused: {saved} of the {UNITS} judgments came from earlier runs" in again.stdout
    assert chat_server.asked("judgment") - asked_before == UNITS - saved  # exactly the judgments not saved before
    assert chat_server.asked("survey") == surveyed
    assert pl.read_parquet(out / "data" / "judgments").height == UNITS


def test_second_sigint_exits_at_once_and_stops_prefects_server(tiny: dict[str, Path], own_prefect_server: None) -> None:
    for server in serve(ChatAPIServer(delay=0.3)):
        config = openai_config(tiny, server)
        out = tiny["dir"] / "out"
        build = start_build(config, out, "forced")
        wait_for_first_micro_batch(build, out)
        prefect_server = prefect_server_of(build)
        server.delay = 20  # after the first Ctrl-C the build would wait that long for its micro-batch

        time.sleep(1)  # the next micro-batch is now in flight
        os.killpg(build.process.pid, signal.SIGINT)
        time.sleep(1)
        assert build.process.poll() is None  # the first Ctrl-C waits for the micro-batch in flight
        sent = time.monotonic()
        os.killpg(build.process.pid, signal.SIGINT)
        returncode = build.process.wait(timeout=60)
        took = time.monotonic() - sent
        stdout, stderr = build.output()

        assert returncode == 130 and took < 5, (took, stdout + stderr)
        assert "Traceback" not in stdout + stderr
        assert "SIGINT again: stopping now" in stderr
        prefect_server.wait(timeout=15)  # its own session: only the build could stop it, and did


def test_prefect_server_does_not_outlive_a_killed_build(
    tiny: dict[str, Path], chat_server: ChatAPIServer, own_prefect_server: None
) -> None:
    # Prefect's server runs in a session of its own (so Ctrl-C does not reach it); killing the build with
    # SIGKILL, which no handler sees, must not leave it running with Prefect's database open under the rerun
    config = openai_config(tiny, chat_server)
    out = tiny["dir"] / "out"
    build = start_build(config, out, "killed")
    wait_for_first_micro_batch(build, out)
    prefect_server = prefect_server_of(build)
    assert os.getpgid(prefect_server.pid) != os.getpgid(build.process.pid)

    os.killpg(build.process.pid, signal.SIGKILL)
    assert build.process.wait(timeout=30) == -signal.SIGKILL
    prefect_server.wait(timeout=20)

    chat_server.delay = 0
    again = run_build(config, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert f"{PERSONAS} personas, {UNITS} judgments" in again.stdout
    assert pl.read_parquet(out / "data" / "judgments").height == UNITS


LAUNCH_THEN_FAIL = """
import os, sys
os.environ.pop("PREFECT_API_URL", None)
from polypref.cli.build import _prefect_server
from polypref.errors import PolyprefError
try:
    with _prefect_server() as server:
        port, process = server._launched
        print(process.pid, os.getsid(process.pid), flush=True)
        raise PolyprefError("an items file with a bad row")
except PolyprefError:
    print(process.wait(timeout=30), flush=True)
"""


def test_a_server_launched_while_inputs_are_checked_is_stopped_when_a_check_fails():
    """The build launches Prefect's server before checking its inputs (it boots meanwhile); a bad input must
    not leave it running: stopped at once, not when its watcher sees the build gone."""
    done = subprocess.run([sys.executable, "-c", LAUNCH_THEN_FAIL], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (pid, session), (status,) = (line.split() for line in done.stdout.splitlines())
    assert pid == session  # its own session: a terminal's Ctrl-C to the build does not reach it
    assert int(status) == -signal.SIGTERM  # terminated by us, while the build was still there
