"""The whole thing as a user runs it: `polypref build` (Prefect flow, ephemeral server) then `datasets`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import load_with_datasets

pytestmark = pytest.mark.integration


def _polypref(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polypref", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not the checkout: assets must come from the package
    out = elsewhere / "OUT"
    result = _polypref(
        "build", "--out", str(out), "--set", "population.size=40", "--set", "judge.samples=2", cwd=elsewhere
    )
    return {"out": out, "result": result, "cwd": elsewhere}


def test_build_runs_cleanly(built):
    result = built["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "40 personas" in result.stdout


def test_datasets_loads_all_three_configs_with_consistent_counts(built):
    out = str(built["out"])
    personas = load_with_datasets(out, "personas")
    judgments = load_with_datasets(out, "judgments")
    preferences = load_with_datasets(out, "preferences")
    pairs = len(set(judgments["pair_id"]))
    assert personas.num_rows == 40 and pairs == 54
    assert judgments.num_rows == personas.num_rows * pairs * 2 * 2
    assert 0 < preferences.num_rows <= personas.num_rows * pairs
    row = preferences[0]
    assert row["chosen"] != row["rejected"] and row["prompt"].endswith("?")
    assert set(row["persona_attributes"]) >= {"age", "sex", "party"}
    assert row["simulated"] is True and row["judge_backend"] == "simulated"
    default = load_with_datasets(out)  # the card marks preferences as the default config
    assert default.num_rows == preferences.num_rows
    kept = sum(1 for reason in judgments["drop_reason"] if reason is None)
    assert sum(preferences["n_judgments"]) == kept


def test_card_states_source_config_and_filters(built):
    card = (built["out"] / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in front["configs"]] == ["preferences", "judgments", "personas"]
    assert "NORC" in card and "gss.norc.org" in card  # citation and terms of the population used
    assert "Simulated judgments" in card and "swap_inconsistent" in card
    assert "size: 40" in card and "samples: 2" in card  # the config used


def test_the_flow_ran_on_prefect(built):
    database = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
    with sqlite3.connect(database) as db:
        states = db.execute(
            "SELECT flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id "
            "WHERE flow.name = 'build-dataset'"
        ).fetchall()
    assert ("COMPLETED",) in states


def test_same_command_again_resumes_without_redoing_shards(built):
    shard = next((built["out"] / "data" / "judgments").glob("*.parquet"))
    before = shard.stat().st_mtime_ns
    again = _polypref(
        "build",
        "--out",
        str(built["out"]),
        "--set",
        "population.size=40",
        "--set",
        "judge.samples=2",
        cwd=built["cwd"],
    )
    assert again.returncode == 0, again.stderr
    assert shard.stat().st_mtime_ns == before
    changed = _polypref("build", "--out", str(built["out"]), cwd=built["cwd"])
    assert changed.returncode == 2 and "different build" in changed.stderr


def test_core_pipeline_does_not_import_prefect():
    code = "import sys, polypref.pipeline, polypref.judges.simulated; print('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_deployment_file_points_at_the_flow():
    from polypref import assets

    spec = yaml.safe_load(assets.path("flows", "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert path == "flows/build.py" and name == "build_dataset"
        assert deployment["parameters"]["config"]["population"]["spec"] == "gss_spending"
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(f"{assets.path('flows', 'build.py')}:build_dataset", use_placeholder_flow=False)
    assert flow.name == "build-dataset"
