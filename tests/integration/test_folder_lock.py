"""One writer per build folder, held by a kernel lock: real processes, a second build refused or waiting, and a
holder killed with SIGKILL (the kernel frees its lock; nothing stale is left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from polypref import pipeline
from polypref.build.lock import FolderInUse, folder_lock, holder
from polypref.build.state import BuildState
from polypref.config import load_config
from tests.conftest import polypref_command, run_without_prefect
from tests.unit.pipeline.test_pipeline import VOLATILE

pytestmark = [pytest.mark.integration, pytest.mark.process]

HOLD = """
import sys, time
from polypref.build.lock import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _polypref(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        polypref_command(*args, "--no-progress"),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _holder(out: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _wait_for_holder(out: Path, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (who := holder(out)) is None or "pid" not in who:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the build never took the folder's lock"
        time.sleep(0.05)
    return who


def test_a_second_build_is_refused_while_one_runs_and_with_wait_runs_after_it(tiny_config, tmp_path):
    """The issue's case: the same build with another filters.min_confidence started on the folder of one that
    runs. Refused at once (exit 2, naming the folder and the process) and, with --wait, run after the first:
    the folder then equals a clean build of the second config."""
    out = tmp_path / "out"
    first = _polypref("build", str(tiny_config), "--out", str(out), cwd=tmp_path)
    who = _wait_for_holder(out, first)
    assert who["pid"] == first.pid and "build" in who["command"]

    second = ["build", str(tiny_config), "--out", str(out), "--set", "filters.min_confidence=0.5"]
    refused = _polypref(*second, cwd=tmp_path)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2, err
    assert f"{out} is in use by another polypref command (pid {first.pid}" in err and "--wait" in err
    assert "Traceback" not in err

    waiting = _polypref(*second, "--wait", cwd=tmp_path)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    _, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err
    assert f"waiting for {out}: in use by pid {first.pid}" in err

    clean = tmp_path / "clean"
    run_without_prefect(pipeline.plan(load_config(tiny_config, ["filters.min_confidence=0.5"]), clean))
    keys = ["persona_id", "pair_id", "order", "sample"]
    for config, order in (("preferences", ["persona_id", "pair_id"]), ("judgments", keys)):
        built = pl.read_parquet(out / "data" / config).drop(VOLATILE).sort(order)
        expected = pl.read_parquet(clean / "data" / config).drop(VOLATILE).sort(order)
        assert built.equals(expected), config
    assert BuildState(out).whole_build_problems() == []
    assert holder(out) is None  # released at exit


def test_the_lock_of_a_process_killed_with_sigkill_is_free_at_once(tmp_path):
    out = tmp_path / "out"
    process = _holder(out, 600)
    with pytest.raises(FolderInUse, match=rf"pid {process.pid}"), folder_lock(out):
        pass
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    with folder_lock(out):  # no stale lock: the kernel released it with the process
        assert holder(out) is not None  # held, by this process now
    assert holder(out) is None


def test_the_flow_itself_holds_the_lock_so_a_served_run_is_refused_too(tiny_config, tmp_path):
    """A served run is a flow run in a process of its own: the flow takes the folder's lock itself."""
    from polypref.runners.prefect_server import load_flow

    out = tmp_path / "out"
    flow = load_flow("build.py:build_dataset")  # as the CLI and a served run load it
    process = _holder(out, 600)
    try:
        with pytest.raises(FolderInUse, match=rf"pid {process.pid}"):
            flow.fn(config=load_config(tiny_config), out=str(out))
    finally:
        process.kill()
        process.wait()
    assert not (out / "data").exists()


def test_a_refused_push_and_a_refused_build_leave_the_folder_as_it_was(tiny_config, tmp_path):
    out = tmp_path / "out"
    run_without_prefect(pipeline.plan(load_config(tiny_config), out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "lock"}
    process = _holder(out, 600)
    try:
        push = subprocess.run(
            polypref_command("push", str(out), "--repo", "org/x"),
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ | {"HF_TOKEN": "hf_not_used"},
        )
        assert push.returncode == 2 and f"in use by another polypref command (pid {process.pid}" in push.stderr
        build = _polypref("build", str(tiny_config), "--out", str(out), "--overwrite", cwd=tmp_path)
        _, err = build.communicate(timeout=120)
        assert build.returncode == 2 and f"pid {process.pid}" in err
        status = subprocess.run(polypref_command("status", str(out)), capture_output=True, text=True, timeout=120)
        assert status.returncode == 0 and f"in use now by pid {process.pid}" in status.stdout  # read-only: no lock
    finally:
        process.kill()
        process.wait()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "lock"} == before


def test_a_command_refused_for_bad_input_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new"
    missing = f"items.source={tmp_path / 'no.jsonl'}"
    result = subprocess.run(
        polypref_command("build", "--out", str(out), "--set", missing),
        capture_output=True,
        text=True,
        timeout=300,
    )  # found while planning, under the lock: the folder the lock made goes again
    assert result.returncode == 2 and "no.jsonl" in result.stderr
    assert not out.exists()
