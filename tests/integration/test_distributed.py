"""Builds whose shards are judged by workers in other processes: two Prefect workers on one work pool (the
session's Prefect server), and a local Ray cluster through prefect-ray. Each builds, row for row, what one
process builds; the stand-in OpenAI server counts that no unit is asked for twice; and a worker killed while it
holds a shard costs at most its micro-batch in flight, another worker finishing the shard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import psutil
import pytest

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import persona_free_units, polypref_command, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

pytestmark = [pytest.mark.integration, pytest.mark.process]

MICRO_BATCH = 12
KEYS = {"judgments": ["persona_id", "pair_id", "order", "sample"], "preferences": ["persona_id", "pair_id"]}


def _settings(endpoint: ChatAPIServer) -> list[str]:
    return [
        *judge_settings(endpoint),
        f"judge.micro_batch={MICRO_BATCH}",
        "judge.concurrency=2",
        "judge.max_concurrency=2",
        "population.size=16",
        "output.units_per_shard=24",
        "output.workers=2",
        "fidelity.check=false",
        "runner.lease_s=3",
        "runner.poll_s=0.3",
    ]


@pytest.fixture
def reference(tiny_config: Path, tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    """The build one process makes, and how many judgments it asked for (persona-free run included)."""
    for server in serve(ChatAPIServer(reply=prefer_the_longer)):
        plan = pipeline.plan(load_config(tiny_config, _settings(server)), tmp_path / "alone")
        run_without_prefect(plan)
        assert plan.num_shards >= 4  # enough shards for two workers, and one to be killed in
        assert server.asked("judgment") == plan.num_units
        assert server.asked("persona-free") == persona_free_units(plan)
        yield tmp_path / "alone", plan.num_units, persona_free_units(plan)


def _rows(out: Path, config: str) -> pl.DataFrame:
    return pl.read_parquet(out / "data" / config).drop("run_id", "created_at").sort(KEYS[config])


def _build(tiny_config: Path, out: Path, settings: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    command = polypref_command("build", str(tiny_config), "--out", str(out), "--no-progress")
    for setting in settings:
        command += ["--set", setting]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _holders(out: Path) -> dict[str, int]:
    """Shard leases held now: job -> pid of the process holding it (runners.claims names host:pid:token)."""
    held = {}
    for lease in (out / ".polypref" / "claims").glob("*.lease"):
        try:
            held[lease.stem] = int(lease.read_text().split('"holder": "')[1].split(":")[1])
        except (OSError, IndexError, ValueError):
            continue  # being written or removed
    return {job: pid for job, pid in held.items() if job.isdigit()}


def _kill_mid_shard(out: Path, build: subprocess.Popen[str], victim: Callable[[int], list[psutil.Process]]) -> int:
    """Once a worker holds a shard and a micro-batch of it is saved, SIGKILL what ``victim(pid)`` names (the
    lease holder, its worker too); returns the killed holder's pid."""
    store = out / ".polypref" / "store"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and build.poll() is None:
        held = _holders(out)
        if held and any(store.rglob("*.parquet")):
            pid = next(iter(held.values()))
            for process in victim(pid):
                process.send_signal(signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker held a shard in time: {build.communicate()[0][-3000:] if build.poll() else ''}")


def _check(out: Path, alone: Path, server: ChatAPIServer, units: int, free_units: int, killed: bool) -> None:
    for config in KEYS:
        assert _rows(out, config).equals(_rows(alone, config)), config
    asked = server.asked("judgment")
    # no unit twice; a killed worker's micro-batch in flight (never saved) is asked again, nothing more
    assert units <= asked <= units + (MICRO_BATCH if killed else 0)
    if not killed:
        assert asked == units
    assert server.asked("persona-free") == free_units
    assert not list((out / ".polypref" / "claims").glob("*.lease"))  # every lease given back


@pytest.fixture
def pool_workers(prefect_api: str) -> Iterator[tuple[str, list[subprocess.Popen[str]], dict[str, str]]]:
    """Two Prefect process workers on a pool of their own, one flow run at a time each (one per GPU)."""
    pool = f"polypref-test-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    made = subprocess.run(
        [prefect, "work-pool", "create", pool, "--type", "process"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stdout + made.stderr
    started = [
        subprocess.Popen(
            [prefect, "worker", "start", "--pool", pool, "--limit", "1", "--type", "process"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        yield pool, started, env
    finally:
        for worker in started:
            for process in (
                [*psutil.Process(worker.pid).children(recursive=True), worker] if worker.poll() is None else []
            ):
                process.kill()
            worker.wait(30)


def _tree_of_worker(workers: list[subprocess.Popen[str]]) -> Callable[[int], list[psutil.Process]]:
    def victim(pid: int) -> list[psutil.Process]:
        for worker in workers:
            tree = psutil.Process(worker.pid).children(recursive=True)
            if any(p.pid == pid for p in tree):
                return [psutil.Process(worker.pid), *tree]  # the worker, and its flow run's process
        raise AssertionError(f"lease holder {pid} is no worker's flow run")

    return victim


@pytest.mark.parametrize("kill", [False, True], ids=["two-workers", "one-killed"])
def test_two_work_pool_workers_build_what_one_process_builds(
    pool_workers, reference, tiny_config: Path, tmp_path: Path, kill: bool
) -> None:
    pool, started, env = pool_workers
    alone, units, free_units = reference
    out = tmp_path / "pool"
    for server in serve(ChatAPIServer(reply=prefer_the_longer, delay=0.05)):
        settings = [*_settings(server), "runner.kind=workpool", f"runner.pool={pool}"]
        build = _build(tiny_config, out, settings, env)
        if kill:
            _kill_mid_shard(out, build, _tree_of_worker(started))
        output, _ = build.communicate(timeout=300)
        assert build.returncode == 0, output
        assert "Traceback" not in output
        _check(out, alone, server, units, free_units, killed=kill)
        if not kill:
            assert all(w.poll() is None for w in started)


def test_work_pool_builds_need_a_shared_prefect_server(tiny_config: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    build = _build(tiny_config, tmp_path / "out", ["runner.kind=workpool"], env)
    output, _ = build.communicate(timeout=120)
    assert build.returncode == 2, output
    assert "runner.kind" in output and "PREFECT_API_URL" in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()


def _ray_worker(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid)]  # Ray's task fails with the worker and is run again elsewhere


@pytest.mark.parametrize("kill", [False, True], ids=["two-workers", "one-killed"])
def test_a_local_ray_cluster_builds_what_one_process_builds(
    reference, tiny_config: Path, tmp_path: Path, kill: bool, own_prefect_server: None
) -> None:
    """As users run it, with the server the command boots (Ray's workers get its address)."""
    alone, units, free_units = reference
    out = tmp_path / "ray"
    for server in serve(ChatAPIServer(reply=prefer_the_longer, delay=0.05)):
        build = _build(tiny_config, out, [*_settings(server), "runner.kind=ray"], dict(os.environ))
        if kill:
            _kill_mid_shard(out, build, _ray_worker)
        output, _ = build.communicate(timeout=300)
        assert build.returncode == 0, output
        _check(out, alone, server, units, free_units, killed=kill)
