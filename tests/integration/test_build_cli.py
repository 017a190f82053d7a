"""The whole thing as a user runs it: `polypref build` (the Prefect flow, on the session's server) then `datasets`.
The commands run in this process; tests/integration/test_signals.py runs them as processes with their own server."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from polypref.config import load_config
from polypref.dataset.configs import CONFIGS
from polypref.errors import Interrupted, JudgeFatalError
from polypref.items import load_items, make_pairs
from polypref.population import load_spec
from tests.conftest import CliResult, load_with_datasets, run_cli
from tests.integration import test_signals
from tests.integration.test_signals import openai_config
from tests.openai_api import ChatAPIServer, prefer_the_longer, request_kind, serve

pytestmark = pytest.mark.integration


def default_pairs() -> int:
    """The pairs a build of the default config judges: every pair of each shipped default item's responses."""
    config = load_config(None)
    items = load_items(config.items.source, load_spec(config.population.spec), config.items.topics)
    return len(make_pairs(items, config.items.pairing, config.items.pairs_per_prompt, config.seed))


PERSONAS, PAIRS, ORDERS, SAMPLES = 40, default_pairs(), 2, 2
JUDGMENTS = PERSONAS * PAIRS * ORDERS * SAMPLES


def _polypref(*args: str, cwd: Path) -> CliResult:
    return run_cli(*args, cwd=cwd)


def run_build(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """A real process: Prefect's console handlers write to the stderr they were made with, which an in-process
    command's redirection does not reach."""
    return test_signals.run_build(config, out)


def _flow_runs(out: Path, database: Path) -> list[dict[str, Any]]:
    """Prefect's records of the flow runs that built ``out``: state, stored parameters, task runs, artifacts."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT flow_run.id, flow_run.state_type, flow_run.parameters, flow_run.start_time FROM flow_run "
            "JOIN flow ON flow.id = flow_run.flow_id WHERE flow.name = 'build-dataset'"
        ).fetchall()
        runs = []
        for run_id, state, parameters, start_time in rows:
            if json.loads(parameters).get("out") != str(out):
                continue
            tasks = db.execute("SELECT run_count FROM task_run WHERE flow_run_id = ?", (run_id,)).fetchall()
            artifacts = db.execute("SELECT key, data FROM artifact WHERE flow_run_id = ?", (run_id,)).fetchall()
            runs.append(
                {
                    "state": state,
                    "parameters": parameters,
                    "task_run_counts": [n for (n,) in tasks],
                    "start_time": datetime.fromisoformat(start_time).replace(tzinfo=UTC),
                    "artifacts": {key: json.loads(data) for key, data in artifacts},
                }
            )
    return runs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not the checkout: assets must come from the package
    out = elsewhere / "OUT"
    args = ("build", "--out", str(out), "--set", f"population.size={PERSONAS}", "--set", f"judge.samples={SAMPLES}")
    result = _polypref(*args, cwd=elsewhere)
    return {"out": out, "result": result, "cwd": elsewhere, "args": args}


def test_build_runs_cleanly(built: dict[str, Any]) -> None:
    result = built["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert f"built {built['out']}: {PERSONAS} personas, {JUDGMENTS} judgments" in result.stdout
    assert "reused" not in result.stdout  # a fresh build reuses nothing


def rows_of(judgments: Any) -> list[tuple[str, str, str | None]]:
    return list(zip(judgments["persona_id"], judgments["pair_id"], judgments["drop_reason"], strict=True))


def test_datasets_loads_every_config_with_consistent_counts(built: dict[str, Any]) -> None:
    out = str(built["out"])
    personas = load_with_datasets(out, "personas")
    judgments = load_with_datasets(out, "judgments")
    preferences = load_with_datasets(out, "preferences")
    pairs = len(set(judgments["pair_id"]))
    assert personas.num_rows == PERSONAS and pairs == PAIRS
    assert judgments.num_rows == JUDGMENTS
    # one row per kept (persona, pair): some, but the filters drop others
    rows = rows_of(judgments)
    kept_pairs = {(persona, pair) for persona, pair, reason in rows if reason is None}
    assert 0 < preferences.num_rows == len(kept_pairs) < PERSONAS * PAIRS
    row = preferences[0]
    assert row["chosen"] != row["rejected"] and row["prompt"].endswith("?")
    assert set(row["persona_attributes"]) >= {"age", "sex", "party"}
    assert row["simulated"] is True and row["judge_backend"] == "simulated"
    weights = load_with_datasets(out, "weights")  # one Fair-PP weight per preference row
    assert sorted(zip(weights["persona_id"], weights["pair_id"], strict=True)) == sorted(
        zip(preferences["persona_id"], preferences["pair_id"], strict=True)
    )
    assert all(w > 0 for w in weights["weight"])
    review = load_with_datasets(out, "review")  # at least the units whose two orders disagreed
    dropped = {(p, q) for p, q, r in rows_of(judgments) if r == "swap_inconsistent"}
    assert dropped <= set(zip(review["persona_id"], review["pair_id"], strict=True))
    default = load_with_datasets(out)  # the card marks preferences as the default config
    assert default.num_rows == preferences.num_rows
    kept = sum(1 for reason in judgments["drop_reason"] if reason is None)
    assert sum(preferences["n_judgments"]) == kept


def test_card_states_source_config_and_filters(built: dict[str, Any]) -> None:
    card = (built["out"] / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in front["configs"]] == [c for c in CONFIGS if c != "episodes"]  # off
    assert set(CONFIGS) == {
        "preferences",
        "judgments",
        "personas",
        "pairs",
        "weights",
        "review",
        "map",
        "distributions",
        "episodes",
    }
    assert "NORC" in card and "gss.norc.org" in card  # citation and terms of the population used
    assert "Simulated judgments" in card and "swap_inconsistent" in card
    assert f"size: {PERSONAS}" in card and f"samples: {SAMPLES}" in card  # the config used


def test_evaluate_on_the_build_matches_its_card_and_prefect_artifact(
    built: dict[str, Any], tmp_path: Path, prefect_database: Path
) -> None:
    """`polypref evaluate` on the build's own test split gives the figures the build put in its summary, card
    and Prefect artifact; the held-out personas are exactly the build's test split."""
    out = built["out"]
    result = _polypref("evaluate", str(out), "--json", str(tmp_path / "fig.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads((tmp_path / "fig.json").read_text())
    summary = json.loads((out / ".polypref" / "summary.json").read_text())
    assert {k: v for k, v in figures.items() if k != "folder"} == summary["personalization"]
    test = load_with_datasets(out, "preferences", split="test")
    assert figures["labels"]["test"] == test.num_rows > 0
    assert figures["personas"]["test"] == len(set(test["persona_id"]))
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"held out {figures['personas']['test']} of {PERSONAS} personas (the build's test split")
    card = (out / "README.md").read_text()
    overall = figures["overall"]
    row = f"| overall | {overall['personas']} | {overall['labels']} | {overall['global_majority']:.3f} |"
    assert "## Personalization" in card and row in card
    runs = _flow_runs(out, prefect_database)
    mine = [run["artifacts"]["personalization"] for run in runs if "personalization" in run["artifacts"]]
    assert mine and all(row in markdown for markdown in mine)


def test_the_flow_ran_on_prefect(built: dict[str, Any], prefect_database: Path) -> None:
    runs = _flow_runs(built["out"], prefect_database)  # this build's runs, not any other test's
    assert runs and all(run["state"] == "COMPLETED" for run in runs)


def test_same_command_again_resumes_without_redoing_shards(built: dict[str, Any]) -> None:
    shard = next((built["out"] / "data" / "judgments").glob("*.parquet"))
    before = shard.stat().st_mtime_ns
    first = built["result"].stdout.splitlines()[0]
    again = _polypref(*built["args"], cwd=built["cwd"])
    assert again.returncode == 0, again.stderr
    assert shard.stat().st_mtime_ns == before
    # the same report as the first run, and what was reused
    assert again.stdout.splitlines()[0] == first
    assert f"reused: {JUDGMENTS} of the {JUDGMENTS} judgments came from earlier runs" in again.stdout


def test_a_filter_change_rebuilds_from_stored_judgments(built: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "copy"  # the module's build stays as it is for the other tests
    shutil.copytree(built["out"], out)
    args = [a if a != str(built["out"]) else str(out) for a in built["args"]]
    changed = _polypref(*args, "--set", "filters.min_confidence=0.9", cwd=built["cwd"])
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"reused: {JUDGMENTS} of the {JUDGMENTS} judgments came from earlier runs" in changed.stdout
    strict = load_with_datasets(str(out), "judgments")
    assert strict.num_rows == JUDGMENTS and "min_confidence: 0.9" in (out / "README.md").read_text()
    loose = load_with_datasets(str(built["out"]), "judgments")
    assert sorted(strict["confidence"]) == sorted(loose["confidence"])  # the same answers, filtered anew


@pytest.mark.process  # a fresh interpreter: what it has imported
def test_core_pipeline_does_not_import_prefect() -> None:
    code = "import sys, polypref.pipeline, polypref.judges.simulated; print('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_deployment_file_points_at_the_flow() -> None:
    from prefect.flows import load_flow_from_entrypoint

    from polypref import assets
    from polypref.config import BuildConfig

    spec = yaml.safe_load(assets.path("flows", "prefect.yaml").read_text())
    flow = load_flow_from_entrypoint(f"{assets.path('flows', 'build.py')}:build_dataset", use_placeholder_flow=False)
    assert flow.name == "build-dataset"
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert path == "flows/build.py" and name == "build_dataset"
        # what a worker would call the flow with: Prefect validates it against the flow's signature
        parameters = flow.validate_parameters(deployment["parameters"])
        assert isinstance(parameters["config"], BuildConfig)
        assert parameters["config"].population.spec == "gss_spending"


@pytest.fixture
def refusing_server() -> Iterator[ChatAPIServer]:
    """A stand-in API that refuses every key, as OpenAI does with HTTP 401."""
    yield from serve(ChatAPIServer(status=401))


@pytest.mark.process  # what the console shows, Prefect's own log lines included
def test_rejected_key_stops_the_build_at_once_without_retrying(
    tiny: dict[str, Path], refusing_server: ChatAPIServer, prefect_database: Path
) -> None:
    # one shard at a time, one micro-batch as large as the concurrency: the first wave is all that may be sent
    config = openai_config(
        tiny, refusing_server, workers=1, micro_batch=2, concurrency=2, max_concurrency=2, max_retries=3
    )
    out = tiny["dir"] / "out"
    result = run_build(config, out)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "error:" in result.stderr and "401" in result.stderr
    assert refusing_server.requests <= 2
    (run,) = _flow_runs(out, prefect_database)
    assert run["state"] == "FAILED"
    assert run["task_run_counts"] and max(run["task_run_counts"]) == 1  # Prefect ran no shard twice


@pytest.mark.process  # what the console shows, Prefect's own log lines included
def test_judgments_without_an_answer_exit_3_and_a_rerun_asks_for_exactly_those(tiny: dict[str, Path]) -> None:
    for server in serve(ChatAPIServer(fail_text="road repair")):  # one of the tiny survey's two topics
        config = openai_config(tiny, server)
        out = tiny["dir"] / "out"
        planned, unanswered = 20 * 12, 20 * 6  # 20 personas x 6 pairs x 2 orders; half are about road repair
        first = run_build(config, out)
        assert first.returncode == 3, first.stdout + first.stderr
        assert "Traceback" not in first.stdout + first.stderr
        assert f"20 personas, {planned} judgments" in first.stdout
        assert (
            f"{unanswered} judgments got no answer (see the card); rerun the same command to ask again for "
            "exactly those" in first.stderr
        )

        server.fail_text = None
        asked = server.asked("judgment")
        again = run_build(config, out)
        assert again.returncode == 0, again.stdout + again.stderr
        assert server.asked("judgment") - asked == unanswered
        assert f"reused: {planned - unanswered} of the {planned} judgments came from earlier runs" in again.stdout
        judgments = pl.read_parquet(out / "data" / "judgments")
        assert judgments.height == planned and judgments["error"].null_count() == planned


@pytest.mark.process  # what the console shows, Prefect's own log lines included
def test_secrets_in_the_config_reach_the_judge_and_nothing_published(
    tiny: dict[str, Path], prefect_database: Path
) -> None:
    """A token inside base_url and a secret in a free-form provider field: the server receives both, and neither
    reaches the card, summary.json, any file of the build, its output, or Prefect's database."""
    url_token, field_secret = "tok-url-5be1c09a7f", "tok-9f2c41d7e8b3a605"
    for server in serve(ChatAPIServer()):
        # a free-form provider field that is not known to be harmless: published only as <redacted>
        config = openai_config(tiny, server, extra_body={"metadata": {"proxy_token": field_secret}})
        raw = yaml.safe_load(config.read_text())
        raw["judge"]["base_url"] = f"http://judge:{url_token}@127.0.0.1:{server.port}/v1"
        config.write_text(yaml.safe_dump(raw))
        out = tiny["dir"] / "out"
        result = run_build(config, out)
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.bodies and all(body["metadata"] == {"proxy_token": field_secret} for body in server.bodies)
        assert server.authorizations[0].startswith("Basic ")  # the URL's credentials were sent
        (run,) = _flow_runs(out, prefect_database)
        stored = json.loads(run["parameters"])
        assert stored["config"]["judge"]["extra_body"] == {"metadata": {"proxy_token": "<redacted>"}}
        assert stored["config"]["judge"]["base_url"] == f"http://***@127.0.0.1:{server.port}/v1"
        card = (out / "README.md").read_text()
        assert f"http://***@127.0.0.1:{server.port}/v1" in card  # provenance kept, credentials gone
        published = [p for p in out.rglob("*") if p.is_file()]
        assert any(p.name == "summary.json" for p in published)
        prefect_db = [p for p in prefect_database.parent.glob("prefect.db*") if p.is_file()]
        for secret in (url_token, field_secret):
            assert secret not in result.stdout + result.stderr
            for path in [*published, *prefect_db]:
                assert secret.encode() not in path.read_bytes(), (secret, path)


@pytest.mark.process  # a process that boots its own server: a server that is already up leaves no boot to overlap
def test_the_fidelity_questions_go_out_while_prefect_starts_and_are_asked_once(
    tiny: dict[str, Path], own_prefect_server: None
) -> None:
    """The CLI asks the fidelity check's questions while Prefect's server boots (the head start: pipeline.fidelity),
    before the flow has started; the flow's check takes those figures instead of asking again."""
    for server in serve(ChatAPIServer(reply=prefer_the_longer)):  # answers with an option: nothing asked twice
        config = openai_config(tiny, server)
        out = tiny["dir"] / "out"
        result = test_signals.run_build(config, out)
        assert result.returncode == 0, result.stdout + result.stderr
        (run,) = _flow_runs(out, Path(os.environ["PREFECT_HOME"]) / "prefect.db")  # the build's own server's
        asked_at = [
            t for body, t in zip(server.bodies, server.received_at, strict=True) if request_kind(body) == "survey"
        ]
        first = datetime.fromtimestamp(time.time() - (time.monotonic() - asked_at[0]), UTC)  # same machine clock
        assert first < run["start_time"], (first, run["start_time"])
        saved = json.loads((out / ".polypref" / "fidelity.json").read_text())["report"]["counts"]
        assert len(asked_at) == saved["asked"] + len(saved["topics"])  # each persona's and the persona-free: once
        assert saved["asked"] == 20 * 2 and saved["answered"] == saved["asked"]


def test_shard_task_retries_surprises_but_never_our_errors() -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from polypref.runners.local import judge_shard  # the task the build's local runner submits, one per shard

    assert judge_shard.retries > 0
    attempts: list[str] = []

    # the shard task's retry settings on a task that fails on demand, run by Prefect's real engines
    @task(
        retries=judge_shard.retries,
        retry_delay_seconds=0,
        retry_condition_fn=judge_shard.retry_condition_fn,
        cache_policy=NO_CACHE,
    )
    def fails_with(error: Exception) -> None:
        attempts.append(type(error).__name__)
        raise error

    @flow
    def shard_fails_with(error: Exception) -> str:
        try:
            fails_with(error)
        except Exception as e:
            return type(e).__name__
        return "no error"

    for error, runs in [
        (OSError("No space left on device"), 1 + judge_shard.retries),
        (JudgeFatalError("HTTP 401"), 1),
        (Interrupted("SIGTERM"), 1),
    ]:
        attempts.clear()
        assert shard_fails_with(error) == type(error).__name__
        assert attempts == [type(error).__name__] * runs
