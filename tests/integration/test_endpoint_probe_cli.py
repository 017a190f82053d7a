"""Issue 25, item 6, through the real CLI: `polypref build` against a dead endpoint says so within seconds (it took
773 s), exits 3 and writes nothing; and Ctrl-C while retries wait out their backoff exits within 5 s (it took
430 s).

Real subprocesses, Prefect and HTTP (a closed port on 127.0.0.1; tests/openai_api.py's server answering 503).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.test_signals import (  # noqa: F401  (no_build_left_behind: an autouse fixture)
    STARTUP_S,
    no_build_left_behind,
    openai_config,
    run_build,
    start_build,
)
from tests.openai_api import ChatAPIServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.process]

DEFAULT_RETRIES = {"max_retries": 8, "backoff_base_s": 1.0, "backoff_max_s": 60.0}  # the judge's defaults


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Dead:
    """Where openai_config looks for the endpoint: a port nothing listens on, with a token in the URL."""

    def __init__(self) -> None:
        self.port = closed_port()
        self.base_url = f"http://judge:tok-dead-77e1@127.0.0.1:{self.port}/v1"


def test_a_dead_endpoint_stops_the_build_within_seconds_naming_it_and_the_cause(
    tiny: dict[str, Path], own_prefect_server: None
) -> None:
    dead = _Dead()
    config = openai_config(tiny, dead, **DEFAULT_RETRIES)  # type: ignore[arg-type]
    out = tiny["dir"] / "out"
    started = time.monotonic()
    result = run_build(config, out)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 3, output  # no answer from the endpoint, as for unanswered judgments: rerun later
    assert f"http://***@127.0.0.1:{dead.port}/v1 (connection refused)" in result.stderr
    assert "judge.base_url" in result.stderr and "tok-dead-77e1" not in output and "Traceback" not in output
    assert took < STARTUP_S / 4, took  # Prefect's start included; minutes of retries before
    assert not out.exists()  # stopped before the folder was prepared: nothing written


def test_ctrl_c_while_retries_wait_out_their_backoff_exits_within_seconds(tiny: dict[str, Path]) -> None:
    for server in serve(ChatAPIServer(status=503)):  # up (it answers the probe), but every request fails
        config = openai_config(tiny, server, max_retries=8, backoff_base_s=30.0, backoff_max_s=60.0)
        settings = yaml.safe_load(config.read_text())
        settings["fidelity"] = {"check": False}  # straight to judging, where the build waited 430 s
        config.write_text(yaml.safe_dump(settings))
        out = tiny["dir"] / "out"
        build = start_build(config, out, "backoff")
        deadline = time.monotonic() + STARTUP_S
        while server.requests < 4:  # a micro-batch sent, answered 503: its requests wait up to 30 s to retry
            assert build.process.poll() is None, "\n".join(build.output())
            assert time.monotonic() < deadline, "no request was sent in time"
            time.sleep(0.05)
        time.sleep(0.5)
        sent = time.monotonic()
        os.killpg(build.process.pid, signal.SIGINT)
        returncode = build.process.wait(timeout=120)
        took = time.monotonic() - sent
        stdout, stderr = build.output()
        assert returncode == 130 and took < 5, (took, stdout + stderr)
        assert "Traceback" not in stdout + stderr and "run the same command again" in stderr
