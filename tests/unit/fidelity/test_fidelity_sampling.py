"""The fidelity check as a sample within a budget, and answers as distributions: personas spread evenly across
groups, as many as ``fidelity.budget`` allows against the planned judgments; each question drawn
``fidelity.samples`` times at ``fidelity.temperature`` (the persona-free model's too, so its baseline is a
distribution, not one greedy answer copied to every persona); the draws kept in the answer store with what they
cost; the interval the sample allows. Against a real OpenAI-compatible HTTP server on loopback that answers a
survey question with the option its request's seed picks (a model sampling at a temperature)."""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.dataset.card import render
from polypref.fidelity import report as fidelity_report
from polypref.fidelity.sample import poststratified, spread
from polypref.fidelity.store import COLUMNS, AnswerStore, spent
from polypref.pipeline import fidelity as fidelity_run
from polypref.records import Persona
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, request_kind, serve

running = contextlib.contextmanager(serve)


def seeded_answer(body: dict) -> tuple[str, str]:
    """A survey question answered with the option the request's seed picks; everything else as
    ``prefer_the_longer`` answers it."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    if "answer" in schema.get("properties", {}):
        options = schema["properties"]["answer"]["enum"]
        return json.dumps({"answer": options[body["seed"] % len(options)]}), "stop"
    return prefer_the_longer(body)


def _persona(pid: str, group: str) -> Persona:
    return Persona(pid, "tiny", pid, 0, group, {}, {}, {}, 1.0, "")


def test_spread_takes_personas_evenly_across_groups_and_keeps_each_groups_first_as_n_grows():
    personas = [_persona(f"a{i}", "a") for i in range(5)] + [_persona("b0", "b")]
    personas += [_persona(f"c{i}", "c") for i in range(3)]
    assert spread(personas, None) == list(range(9)) and spread(personas, 20) == list(range(9))
    # turns in order of group name: a0 b0 c0, a1 c1, a2 c2, a3, a4
    assert [personas[i].id for i in spread(personas, 4)] == ["a0", "a1", "b0", "c0"]
    assert [personas[i].id for i in spread(personas, 6)] == ["a0", "a1", "a2", "b0", "c0", "c1"]
    for n in range(1, 9):  # growing n only adds personas
        assert set(spread(personas, n)) <= set(spread(personas, n + 1))
    grown = [*personas, _persona("b1", "b")]  # the population grows: the groups' first personas stay asked
    assert [grown[i].id for i in spread(grown, 4)] == ["a0", "a1", "b0", "c0"]


def test_the_budget_caps_the_checks_requests_at_its_share_of_the_judging(tiny_config, tmp_path):
    server = ChatAPIServer(reply=seeded_answer)
    settings = [*judge_settings(server), "fidelity.budget=0.1", "fidelity.samples=5"]
    with running(server):
        plan = pipeline.plan(load_config(tiny_config, settings), tmp_path / "out")
        report = fidelity_run.for_build(plan)
    topics = len(report.topics)
    asked = plan.fidelity_personas()
    assert asked is not None and 1 < asked < len(plan.population.personas)
    # the personas' questions and the persona-free model's, every draw: within a tenth of the judging
    assert server.requests == (asked + 1) * topics * 5 <= 0.1 * plan.num_units
    assert server.requests > 0.1 * plan.num_units - 2 * topics * 5  # and not far under it
    assert plan.planned_requests()["fidelity_questions"] == server.requests
    assert report.personas == asked and report.population == len(plan.population.personas)
    # spread across the groups: no group has two personas more than another
    assert max(report.group_personas.values()) - min(report.group_personas.values()) <= 1
    interval = report.individual.personas.overall
    assert interval.exact_low is not None and interval.exact_low <= interval.exact <= interval.exact_high
    card = fidelity_report.as_card(report)
    assert card["population"] == len(plan.population.personas) and card["samples"] == 5
    # explicit personas win over the budget; the simulator asks no model, so no budget
    fixed = pipeline.plan(load_config(tiny_config, [*settings, "fidelity.personas=3"]), tmp_path / "fixed")
    assert fixed.fidelity_personas() == 3
    assert pipeline.plan(load_config(tiny_config), tmp_path / "sim").fidelity_personas() is None


def test_each_question_is_drawn_several_times_and_the_persona_free_baseline_is_a_distribution(tiny_config, tmp_path):
    server = ChatAPIServer(reply=seeded_answer)
    settings = [*judge_settings(server), "fidelity.personas=6", "fidelity.samples=4", "fidelity.temperature=0.7"]
    with running(server):
        plan = pipeline.plan(load_config(tiny_config, settings), tmp_path / "out")
        report = fidelity_run.for_build(plan)
        bodies = [b for b in server.bodies if request_kind(b) == "survey"]
        topics = len(report.topics)
        assert len(bodies) == (6 + 1) * topics * 4 == server.requests
        assert {b["temperature"] for b in bodies} == {0.7}
        # four draws of each question, each with a seed of its own
        per_question = Counter(json.dumps(b["messages"]) for b in bodies)
        assert set(per_question.values()) == {4}
        seeds = {}
        for b in bodies:
            seeds.setdefault(json.dumps(b["messages"]), set()).add(b["seed"])
        assert all(len(s) == 4 for s in seeds.values())
        assert report.samples == 4 and report.temperature == 0.7 and report.asked == 6 * topics * 4

        # the persona-free draws, as the server answered them: the baseline is their distribution
        free = [b for b in bodies if b["messages"][0]["role"] != "system"]
        population = plan.population.personas
        chosen = [population[i] for i in spread(population, 6)]
        said: dict[str, list[str]] = {}
        for b in free:
            topic = next(t for t in report.topics if plan.population.spec.question(t) in b["messages"][-1]["content"])
            said.setdefault(topic, []).append(json.loads(seeded_answer(b)[0])["answer"])
        assert len({a for answers in said.values() for a in answers}) > 1  # not one answer copied
        # scored against each respondent as its most common draw (the first drawn of equal counts), each persona
        # weighted by its group's share of the population over its share of the sample (equal weights here)
        share = Counter(p.group for p in population)
        sampled = Counter(p.group for p in chosen)
        modal = {t: Counter(answers).most_common(1)[0][0] for t, answers in said.items()}
        rows = [
            (share[p.group] / sampled[p.group], modal[t] == p.attitudes[t])
            for t in report.topics
            for p in chosen
            if p.attitudes.get(t) is not None
        ]
        expected = sum(w * right for w, right in rows) / sum(w for w, _ in rows)
        assert report.individual.persona_free.overall.exact == pytest.approx(expected, abs=1e-6)

        # a rerun asks nothing: every draw is saved under its own key
        again = pipeline.plan(load_config(tiny_config, settings), tmp_path / "out")
        assert fidelity_run.for_build(again) == report
        fidelity_run._ask(again)  # the check itself, past the saved figures: every answer from the store
        assert server.requests == len(bodies)
        # the cost of the draws, from the store
        assert fidelity_run.spent(again) == {
            "requests": len(bodies),
            "prompt_tokens": 100 * len(bodies),
            "completion_tokens": 20 * len(bodies),
        }


def test_answers_saved_before_costs_were_kept_still_serve_and_count_as_one_request_each(tmp_path):
    store = AnswerStore(tmp_path, "settings")
    keys = AnswerStore.keys([[{"role": "user", "content": "q"}]] * 2, [("x", "y")] * 2, [0, 1])
    assert (keys[0] != keys[1]).any()  # a second draw of a question has a key of its own
    old = pl.DataFrame({"k0": keys[:, 0], "k1": keys[:, 1], "answer": ["x", None]}, schema=COLUMNS)
    (tmp_path / "settings").mkdir()
    old.write_parquet(tmp_path / "settings" / "old.parquet")  # a segment from before the cost columns
    assert store.lookup(keys) == {0: "x", 1: None}
    assert spent(tmp_path) == {"requests": 2, "prompt_tokens": None, "completion_tokens": None}
    more = AnswerStore.keys([[{"role": "user", "content": "r"}]], [("x", "y")])
    store.save(more, ["y"], {"requests": [3], "prompt_tokens": [30], "completion_tokens": [6]})
    assert store.lookup(more) == {0: "y"}
    assert spent(tmp_path) == {"requests": 5, "prompt_tokens": None, "completion_tokens": None}
    # every judge's settings count (a changed temperature paid too); a damaged segment is left out, not fatal
    other = AnswerStore(tmp_path, "other-settings")
    other.save(more, ["x"], {"requests": [1], "prompt_tokens": [10], "completion_tokens": [2]})
    (tmp_path / "other-settings" / "damaged.parquet").write_bytes(b"PAR1 not a parquet file")
    assert spent(tmp_path) == {"requests": 6, "prompt_tokens": None, "completion_tokens": None}
    new = AnswerStore(tmp_path / "new", "s")
    new.save(more, ["y"], {"requests": [2], "prompt_tokens": [20], "completion_tokens": [4]})
    assert spent(tmp_path / "new") == {"requests": 2, "prompt_tokens": 20, "completion_tokens": 4}
    assert spent(tmp_path / "none") == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}


def test_a_build_counts_the_checks_draws_in_its_cost_by_kind(tiny_config, tmp_path):
    server = ChatAPIServer(reply=seeded_answer)
    settings = [*judge_settings(server), "fidelity.personas=2", "fidelity.samples=3"]
    with running(server):
        plan = pipeline.plan(load_config(tiny_config, settings), tmp_path / "out")
        report = fidelity_run.for_build(plan)  # the flow's check, before the shards
        summary = run_without_prefect(plan)
        kinds = Counter(request_kind(body) for body in server.bodies)
    made = summary["requests_by_kind"]["fidelity_questions"]
    assert made["requests"] == kinds["survey"] == 3 * 3 * len(plan.population.spec.attitudes.items)
    assert made["prompt_tokens"] == 100 * kinds["survey"]
    fidelity_report.save(plan, report)  # as the flow keeps it with the build, for the card
    card = render(plan, summary)
    section = " ".join(card[card.index("## Fidelity") : card.index("## Items")].split())  # as words, unwrapped
    assert "3 times at temperature 1.0" in section and "(a sample of the 60, spread evenly" in section


def test_the_sample_is_weighted_back_to_each_groups_share_of_the_population():
    personas = [_persona(f"a{i}", "a") for i in range(6)] + [_persona(f"b{i}", "b") for i in range(2)]
    sample = poststratified(personas, spread(personas, 4))  # two of each group
    assert [(p.id, p.weight) for p in sample] == [("a0", 3.0), ("a1", 3.0), ("b0", 1.0), ("b1", 1.0)]
    assert sum(p.weight for p in sample) == sum(p.weight for p in personas)  # the population's total weight
    assert poststratified(personas, range(8)) == personas  # everyone asked: weights as they are


def test_a_budget_too_small_for_every_group_still_asks_one_persona_of_each(tiny_config, tmp_path):
    settings = [*judge_settings("http://127.0.0.1:9/v1"), "fidelity.budget=0.001", "fidelity.samples=2"]
    plan = pipeline.plan(load_config(tiny_config, settings), tmp_path / "out")
    groups = {p.group for p in plan.population.personas}
    assert plan.fidelity_personas() == len(groups) > 1
    asked = [plan.population.personas[i] for i in spread(plan.population.personas, len(groups))]
    assert {p.group for p in asked} == groups
