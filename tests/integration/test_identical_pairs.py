"""Pairs whose two responses are the same text (a generator that repeats itself) are dropped as identical_texts
without a judge request: a verdict between a text and itself states no preference. A real OpenAI-compatible
server (tests/openai_api.py) writes the responses and judges; it counts what it is asked."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, request_kind, serve

pytestmark = pytest.mark.integration

PROMPTS = Path(__file__).parent.parent / "fixtures" / "items" / "prompts.jsonl"


def _repeating_writer(body: dict) -> tuple[str, str]:
    """Writes one of two texts per prompt (by the seed's parity), so of three samples at least two repeat each
    other, as a model at a low temperature would. Judges like prefer_the_longer."""
    if request_kind(body) == "generation":
        return f"Answer {body['seed'] % 2} to: {body['messages'][-1]['content']}", "stop"
    return prefer_the_longer(body)


def test_pairs_of_identical_texts_are_dropped_without_a_request(tmp_path: Path) -> None:
    config_path = tmp_path / "build.yaml"
    config_path.write_text(yaml.safe_dump({"seed": 1, "population": {"size": 3}, "items": {"source": str(PROMPTS)}}))
    for server in serve(ChatAPIServer(reply=_repeating_writer)):
        writer = "{backend: openai, model: writer, base_url: " + server.base_url + ", api_key_env: null}"
        config = load_config(config_path, [*judge_settings(server), "generate.n=3", f"generate.generators=[{writer}]"])
        plan = pipeline.plan(config, tmp_path / "out")
        summary = run_without_prefect(plan)
        kinds = [request_kind(b) for b in server.bodies]
        judged = [b["messages"][-1]["content"] for b in server.bodies if request_kind(b) != "generation"]
        plan = pipeline.generate_responses(plan)  # the texts, read back from the build's store
        assert [request_kind(b) for b in server.bodies] == kinds  # no request for them

    identical = [p for p in plan.pairs if p.a.text == p.b.text]
    assert 0 < len(identical) < len(plan.pairs)  # the check means something: both kinds of pair are built
    shown = [tuple(t.split(f"<<<RESPONSE {s}>>>")[1].split(f"<<<END RESPONSE {s}>>>")[0] for s in "AB") for t in judged]
    assert all(a != b for a, b in shown)  # no judge was shown a text against itself
    samples = config.judge.samples
    personas = len(plan.population.personas)
    distinct = len(plan.pairs) - len(identical)
    assert kinds.count("judgment") == distinct * personas * 2 * samples
    assert kinds.count("persona-free") == distinct * 2 * samples

    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    dropped = judgments.filter(pl.col("drop_reason") == "identical_texts")
    assert dropped.height == len(identical) * personas * 2 * samples
    assert dropped["attempts"].to_list() == [0] * dropped.height
    assert summary["judge_requests"] == kinds.count("judgment") and summary["retries"] == 0
