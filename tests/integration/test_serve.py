"""Scheduled builds: `polypref serve` (Prefect's Runner and polypref's own server, one process) and the
deployments in flows/prefect.yaml, deployed with Prefect's CLI to a server this module starts.

Everything is real: the CLI in a subprocess, Prefect's server, runner and flow-run processes, the build, and
`datasets` reading the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, load_with_datasets, polypref_command, prefect_servers_under

pytestmark = [pytest.mark.integration, pytest.mark.process]

PERSONAS = 4
STARTUP_S = 240  # the session's first Prefect start migrates a fresh database (~30 s on 2 cores)
COMPLETED = re.compile(r"^run (\S+) \(.*\): Completed$", re.MULTILINE)


def _polypref(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        polypref_command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _deployment_runs(deployment: str, out: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Run name: (state type, parameters) of the runs of ``deployment`` into ``out``, from Prefect's database."""
    database = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT flow_run.name, flow_run.state_type, flow_run.parameters FROM flow_run "
            "JOIN deployment ON deployment.id = flow_run.deployment_id WHERE deployment.name = ?",
            (deployment,),
        ).fetchall()
    runs = {name: (state, json.loads(parameters)) for name, state, parameters in rows}
    return {name: run for name, run in runs.items() if run[1]["out"] == str(out)}


@pytest.fixture
def serving(tiny: dict[str, Path], own_prefect_server: None) -> Iterator[dict[str, Any]]:
    """`polypref serve --interval 2 --add-personas 1` on the tiny survey, in a session of its own as a shell
    starts a job, with the server it starts for itself (the session's runs no scheduler); killed with its process
    group if a test leaves it running."""
    out = tiny["dir"] / "out"
    stdout, stderr = tiny["dir"] / "serve.stdout", tiny["dir"] / "serve.stderr"
    config = tiny["dir"] / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "population": {"spec": str(tiny["spec"]), "size": PERSONAS},
                "items": {"source": str(tiny["items"])},
                "output": {"units_per_shard": 200, "row_group_rows": 1000},
            }
        )
    )
    # the runner (and serve's scheduler) look for work every PREFECT_RUNNER_POLL_FREQUENCY seconds, 10 by default
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    command = polypref_command("serve", str(config), "--out", str(out), "--interval", "2")
    command += ["--add-personas", "1"]
    with stdout.open("w") as o, stderr.open("w") as e:
        process = subprocess.Popen(command, cwd=tiny["dir"], stdout=o, stderr=e, env=env, start_new_session=True)
    try:
        yield {"process": process, "out": out, "stdout": stdout, "stderr": stderr}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_serve_builds_on_schedule_and_stops_cleanly_on_ctrl_c(serving: dict[str, Any]) -> None:
    process, out = serving["process"], serving["out"]

    def output() -> str:
        return serving["stdout"].read_text() + serving["stderr"].read_text()

    deadline = time.monotonic() + STARTUP_S
    while len(COMPLETED.findall(serving["stdout"].read_text())) < 2:  # two scheduled runs have finished
        assert process.poll() is None, "serve ended by itself:\n" + output()
        assert time.monotonic() < deadline, "no two runs finished in time:\n" + output()
        time.sleep(0.2)
    first = serving["stdout"].read_text().splitlines()[0]
    assert first.startswith(f"serving polypref-refresh: every 2 s into {out}, next run "), first
    assert first.endswith(" UTC (Ctrl-C to stop)")
    server = prefect_servers_under(process.pid)
    assert len(server) == 1, "serve runs no Prefect server of its own"

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the foreground group
    returncode = process.wait(timeout=120)

    assert returncode == 130, output()
    assert "Traceback" not in output()
    assert "stopped by SIGINT: serving polypref-refresh ended" in serving["stderr"].read_text()
    server[0].wait(timeout=30)  # in a session of its own: only serve could stop it, and did
    # what the runs built: a finished build that `datasets` loads (how many personas the runs added is the
    # pipeline's business; at least the config's are there)
    summary = json.loads((out / ".polypref" / "summary.json").read_text())
    assert summary["personas"] >= PERSONAS
    personas = load_with_datasets(out, "personas")
    preferences = load_with_datasets(out, "preferences")
    assert personas.num_rows == summary["personas"] and preferences.num_rows > 0
    # Prefect's records: the served deployment's runs, with the config and folder as parameters; the runs
    # reported as completed are recorded as such (the stop came right after the second one ended)
    runs = _deployment_runs("polypref-refresh", out)
    reported = COMPLETED.findall(serving["stdout"].read_text())
    assert len(reported) >= 2 and all(runs[name][0] == "COMPLETED" for name in reported), (reported, runs)
    assert all(p["config"]["population"]["size"] == PERSONAS and p["add_personas"] == 1 for _, p in runs.values())
    assert "SCHEDULED" not in {state for state, _ in runs.values()}  # a stop leaves no run waiting


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "population.size=0"], "population.size"),
        (["--cron", "61 * * * *"], "--cron: Value error, Invalid cron string"),
        (["--out", "{dir}/not-a-build"], "not-a-build is not empty and holds no polypref build"),
        (
            [
                "--set",
                "judge={backend: openai, model: m, api_key_env: null, base_url: 'http://u:s3cr3t-tok@127.0.0.1:9/v1'}",
            ],
            "judge.base_url: Prefect's stored flow parameters leave this out",
        ),
    ],
    ids=["bad-config", "bad-cron", "bad-output-folder", "secret-in-base-url"],
)
def test_serve_refuses_before_serving(tiny: dict[str, Path], args: list[str], message: str) -> None:
    (tiny["dir"] / "not-a-build").mkdir()
    (tiny["dir"] / "not-a-build" / "notes.txt").write_text("mine")
    base = ["--set", f"population.spec={tiny['spec']}", "--set", f"items.source={tiny['items']}"]
    base += ["--set", "population.size=4", "--out", str(tiny["dir"] / "out")]
    result = _polypref("serve", *base, *[a.replace("{dir}", str(tiny["dir"])) for a in args], cwd=tiny["dir"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert message in result.stderr
    assert "serving" not in result.stdout
    assert "s3cr3t-tok" not in result.stdout + result.stderr
    assert not (tiny["dir"] / "out").exists()


def _deployments_file() -> dict[str, Any]:
    return yaml.safe_load((REPO / "flows" / "prefect.yaml").read_text())


def test_deployments_file_loads_and_its_parameters_fit_the_flow() -> None:
    from prefect.flows import load_flow_from_entrypoint

    from polypref.config import BuildConfig

    spec = _deployments_file()
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"gss-build", "gss-refresh"}
    for deployment in deployments.values():
        path, _, function = deployment["entrypoint"].partition(":")
        assert (REPO / path).is_file()
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]), use_placeholder_flow=False)
        assert flow.name == "build-dataset" and flow.fn.__name__ == function
        parameters = flow.validate_parameters(deployment["parameters"])  # as Prefect does before each run
        assert isinstance(parameters["config"], BuildConfig)
    assert "schedules" not in deployments["gss-build"]  # the one-off build runs on demand
    refresh = deployments["gss-refresh"]
    (schedule,) = refresh["schedules"]
    assert schedule["cron"] and schedule["timezone"] == "UTC" and schedule["active"] is True
    assert refresh["parameters"]["add_personas"] > 0 and refresh["concurrency_limit"] == 1
    # the header's commands name the pool the deployments use
    header = (REPO / "flows" / "prefect.yaml").read_text().split("\nname:")[0]
    pools = {d["work_pool"]["name"] for d in deployments.values()}
    (pool,) = pools
    assert f"prefect work-pool create {pool} --type process" in header
    assert f"prefect worker start --pool {pool}" in header
    assert "prefect deploy --all --prefect-file flows/prefect.yaml" in header
    assert "prefect deployment run build-dataset/gss-build" in header


def test_prefect_deploy_creates_both_deployments_and_the_refresh_schedule(prefect_api: str, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # `prefect deploy` runs in a copy: nothing it might write lands in the repo
    shutil.copytree(REPO / "flows", checkout / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    pool = next(iter({d["work_pool"]["name"] for d in _deployments_file()["deployments"]}))
    # PWD as a shell sets it: the pull step records the folder deployed from
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PWD": str(checkout)}
    prefect = [str(Path(sys.executable).with_name("prefect"))]
    for command in (
        ["work-pool", "create", pool, "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all", "--prefect-file", "flows/prefect.yaml"],
    ):
        done = subprocess.run([*prefect, *command], cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    import httpx

    response = httpx.post(f"{prefect_api}/deployments/filter", json={}, timeout=30)
    response.raise_for_status()
    deployments = {d["name"]: d for d in response.json() if d["name"] in ("gss-build", "gss-refresh")}
    assert set(deployments) == {"gss-build", "gss-refresh"}
    for deployment in deployments.values():
        assert deployment["entrypoint"] == "flows/build.py:build_dataset"
        assert deployment["work_pool_name"] == pool
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(checkout)}}
        ]
    assert deployments["gss-build"]["schedules"] == []
    (schedule,) = deployments["gss-refresh"]["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 3 * * *" and schedule["schedule"]["timezone"] == "UTC"
    assert deployments["gss-refresh"]["global_concurrency_limit"]["limit"] == 1
    assert deployments["gss-refresh"]["parameters"]["add_personas"] == 100
