"""Whole builds over each item format, judged through the OpenAI backend against a real local HTTP server.

The server (tests/openai_api.py) answers every request with a fixed verdict; everything on our side is real:
reading the source, pairing, the portrayals, the requests, the filters, the Parquet and `datasets` reading it back.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.population import load_spec
from tests.conftest import load_with_datasets, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, request_kind, serve

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "items"
FORMATS = {  # fixture -> (format detected, conversational output)
    "pairwise.jsonl": ("pairwise", False),
    "completions.jsonl": ("completions", False),
    "conversational.jsonl": ("pairwise", True),
    "conversational_prompt.jsonl": ("pairwise", True),
    "open_polypref.jsonl": ("polypref", False),
}


@pytest.fixture(scope="module")
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=prefer_the_longer))


def _config(tmp_path: Path, items: dict, size: int = 4) -> Path:
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "population": {"size": size}, "items": items}))
    return path


def _source_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


@pytest.mark.parametrize("fixture", sorted(FORMATS))
def test_each_format_builds_end_to_end_with_texts_byte_exact(
    fixture: str, server: ChatAPIServer, tmp_path: Path
) -> None:
    fmt, conversational = FORMATS[fixture]
    config = load_config(_config(tmp_path, {"source": str(FIXTURES / fixture)}), judge_settings(server))
    plan = pipeline.plan(config, tmp_path / "out")
    summary = run_without_prefect(plan)
    assert summary["item_source"]["format"] == fmt
    prefs = load_with_datasets(tmp_path / "out", "preferences")
    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    assert judgments.height == len(plan.pairs) * 2 * 4 == summary["judgments"]
    assert prefs.num_rows == summary["preferences"] > 0

    # every published text is one the source holds, character for character
    source = json.dumps(_source_rows(fixture), ensure_ascii=False)
    for row in prefs:
        for column in ("prompt", "chosen", "rejected"):
            value = row[column]
            if conversational:
                assert isinstance(value, list) and all(set(m) == {"role", "content"} for m in value)
                texts = [m["content"] for m in value]
            else:
                assert isinstance(value, str)
                texts = [value]
            assert all(json.dumps(t, ensure_ascii=False)[1:-1] in source for t in texts)
    if conversational:  # TRL's conversational format: lists of {role, content}
        assert str(prefs.features["chosen"]).startswith("List(")
    if fmt == "pairwise":  # the source's label is kept (every fixture's chosen is its longer response)
        assert all(row["source_label_agrees"] for row in prefs)
        assert summary["source_label_agreement"]["rate"] == 1.0
        assert summary["source_label_agreement"]["preferences"] == prefs.num_rows


def test_a_source_without_labels_reports_no_agreement(server: ChatAPIServer, tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, {"source": str(FIXTURES / "open_polypref.jsonl")}), judge_settings(server))
    summary = run_without_prefect(pipeline.plan(config, tmp_path / "out"))
    prefs = pl.read_parquet(tmp_path / "out" / "data" / "preferences")
    assert summary["source_label_agreement"] is None and prefs["source_label_agrees"].null_count() == prefs.height


def test_the_judged_topic_is_held_out_of_the_portrayal(server: ChatAPIServer, tmp_path: Path) -> None:
    """The shipped GSS items are about the survey's own questions: no request may show the persona's answer to
    the question it is judging, and each still shows its other answers."""
    items = {"source": "gss_spending", "topics": ["natfare", "natheal"]}
    config = load_config(_config(tmp_path, items, size=3), judge_settings(server))
    plan = pipeline.plan(config, tmp_path / "out")
    before = server.requests
    run_without_prefect(plan)
    bodies = [b for b in server.bodies[before:] if request_kind(b) == "judgment"]  # not the persona-free run's
    topic_text = {t: item.topic for t, item in load_spec("gss_spending").attitudes.items.items()}
    by_prompt = {pair.item.prompt: pair.item.topic for pair in plan.pairs}
    checked = 0
    for body in bodies:
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        topic = next(t for prompt, t in by_prompt.items() if prompt in user)
        persona = next(p for p in plan.population.personas if system.endswith(plan.portrayer(p, topic).text))
        own = persona.attitudes[topic]
        assert f"{topic_text[topic]}: {own}" not in system
        others = [t for t, v in persona.attitudes.items() if v is not None and t != topic]
        assert others and all(f"{topic_text[t]}: {persona.attitudes[t]}" in system for t in others)
        checked += 1
    assert checked == len(bodies) == plan.num_units
    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    assert not judgments.filter(pl.col("portrayal_topics").list.contains(pl.col("topic"))).height


def test_holding_out_can_be_turned_off(server: ChatAPIServer, tmp_path: Path) -> None:
    items = {"source": "gss_spending", "topics": ["natfare"]}
    config = load_config(
        _config(tmp_path, items, size=2), [*judge_settings(server), "portrayal.hold_out_judged_topic=false"]
    )
    plan = pipeline.plan(config, tmp_path / "out")
    run_without_prefect(plan)
    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    answered = judgments.filter(pl.col("portrayal_topics").list.len() > 0)
    assert answered.height and answered.filter(pl.col("portrayal_topics").list.contains("natfare")).height


@pytest.mark.parametrize("fixture", ["pairwise.jsonl", "completions.jsonl", "open_polypref.jsonl"])
def test_the_simulated_judge_refuses_open_items_before_any_work(fixture: str, tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, {"source": str(FIXTURES / fixture)}))
    with pytest.raises(ConfigError) as info:
        pipeline.plan(config, tmp_path / "out")
    field, reason = info.value.problems[0]
    assert field.startswith("item ") and "annotate" in reason and "judge.backend" in reason
    assert not (tmp_path / "out").exists()


def test_a_prompts_only_source_has_responses_generated_then_judged_and_resumes(
    server: ChatAPIServer, tmp_path: Path
) -> None:
    writer = "{backend: openai, model: writer-%s, base_url: " + server.base_url + ", api_key_env: null}"
    generators = f"[{writer % 'a'}, {writer % 'b'}]"
    settings = [*judge_settings(server), "generate.n=2", f"generate.generators={generators}"]
    config_path = _config(tmp_path, {"source": str(FIXTURES / "prompts.jsonl")})
    config = load_config(config_path, settings)
    plan = pipeline.plan(config, tmp_path / "out")
    prompts = len(_source_rows("prompts.jsonl"))
    assert len(plan.items) == prompts and all(len(i.responses) == 4 for i in plan.items)
    assert len(plan.pairs) == prompts * 6  # all pairs of 2 generators x 2 samples
    before = server.requests
    summary = run_without_prefect(plan)
    # what is not a judge's request (the personas' or the persona-free run's: both show the pair) is generation
    generated = [b for b in server.bodies[before:] if "<<<RESPONSE A>>>" not in b["messages"][-1]["content"]]
    assert len(generated) == prompts * 4
    assert summary["requests_by_kind"]["generation"]["requests"] == len(generated)  # counted with the judge's
    assert summary["requests_by_kind"]["total"]["requests"] == server.requests - before
    assert summary["item_source"]["generated_by"] == ["writer-a", "writer-b"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "generated for this dataset, 2 per prompt by each of\n  `writer-a`, `writer-b`" in card
    prefs = pl.read_parquet(tmp_path / "out" / "data" / "preferences")
    assert prefs.height and set(prefs["chosen_model"]) | set(prefs["rejected_model"]) <= {"writer-a", "writer-b"}
    # one prompt is a conversation, so the build publishes messages: every response is one generated turn
    responses = [*prefs["chosen"].to_list(), *prefs["rejected"].to_list()]
    assert all(len(r) == 1 and r[0]["role"] == "assistant" for r in responses)
    assert all(r[0]["content"].startswith("Response ") for r in responses)
    military = "What is one trade-off in spending more on the military?"
    conversation = [b for b in generated if b["messages"][0]["content"] == military]
    assert len(conversation) == 4 and all(b["messages"][0]["role"] == "user" for b in conversation)

    # a rerun of the finished build generates nothing and judges nothing
    before = server.requests
    again = run_without_prefect(pipeline.plan(config, tmp_path / "out"))
    assert server.requests == before and again["preferences"] == summary["preferences"]

    # responses generated again are other texts: the answers stored for the old ones are not theirs
    shutil.rmtree(BuildState(tmp_path / "out").generated_dir)
    original = server.reply

    def another_writer(body: dict) -> tuple[str, str]:
        text, end = original(body)
        return text.replace("Response ", "Another response "), end

    server.reply = another_writer
    try:
        before = server.requests
        rebuilt = load_config(config_path, [*settings, "filters.min_confidence=0.5"])
        regenerated = run_without_prefect(pipeline.plan(rebuilt, tmp_path / "out"))
    finally:
        server.reply = original
    judged = [b for b in server.bodies[before:] if "role-playing" in b["messages"][0]["content"]]
    assert len(judged) == regenerated["judgments"] == summary["judgments"]
    assert all("Another response" in b["messages"][-1]["content"] for b in judged)


def test_generate_with_items_that_have_responses_is_refused(server: ChatAPIServer, tmp_path: Path) -> None:
    generators = "[{backend: openai, model: w, base_url: " + server.base_url + ", api_key_env: null}]"
    settings = [*judge_settings(server), f"generate.generators={generators}"]
    config = load_config(_config(tmp_path, {"source": str(FIXTURES / "pairwise.jsonl")}), settings)
    with pytest.raises(ConfigError) as info:
        pipeline.plan(config, tmp_path / "out")
    assert info.value.problems[0][0] == "generate" and "prompts-only" in info.value.problems[0][1]
