"""Fidelity: the distances on hand-worked distributions, the persona-free stand-in, and the check itself with
the simulator (which must score the floor) and with a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.fidelity import FidelityReport, check
from polypref.fidelity import report as fidelity_report
from polypref.fidelity.metrics import alignment, distribution, tvd
from polypref.fidelity.questions import SYSTEM_TEMPLATE
from polypref.fidelity.scoring import score, survey_targets
from polypref.judges.options import named_option
from polypref.pipeline import fidelity as fidelity_run
from polypref.population.baseline import persona_free
from polypref.records import Persona
from tests.conftest import spec_dict
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

running = contextlib.contextmanager(serve)


def test_tvd_and_alignment_on_hand_worked_distributions():
    p, q = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])
    assert tvd(p, q) == 1.0 and alignment(p, q) == 0.0  # all answers at opposite ends
    assert tvd(p, p) == 0.0 and alignment(p, p) == 1.0
    p, q = np.array([0.5, 0.5, 0]), np.array([0, 0.5, 0.5])
    # half the answers move one step: TVD counts the move, Wasserstein its length (0.5 + 0.5) / (3 - 1)
    assert tvd(p, q) == pytest.approx(0.5) and alignment(p, q) == pytest.approx(0.5)
    one_step, far = np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
    start = np.array([1.0, 0, 0])
    assert tvd(start, one_step) == tvd(start, far) == 1.0
    assert alignment(start, one_step) == pytest.approx(0.5) and alignment(start, far) == 0.0


def test_distribution_weights_answers_and_leaves_unanswered_out():
    options = np.array([0, 2, 2, -1, 1])
    weights = np.array([3.0, 1.0, 1.0, 100.0, 1.0])
    assert distribution(options, weights, 3) == pytest.approx([0.5, 1 / 6, 2 / 6])
    assert distribution(np.array([-1, -1]), np.ones(2), 3) is None


def test_named_option_takes_the_whole_option_as_text_or_as_the_schema_object():
    options = ["too little", "about right", "too much"]
    assert named_option(' "Too little." ', options) == "too little"
    assert named_option('{"answer": "about right"}', options) == "about right"
    assert named_option("too little, I think", options) is None
    assert named_option('{"answer": 3}', options) is None
    assert named_option(None, options) is None


def _persona(pid: str, group: str, answers: dict[str, str | None], weight: float = 1.0) -> Persona:
    return Persona(pid, "tiny", pid, 0, group, {}, answers, {}, weight, f"I am {pid}.")


def test_score_against_crafted_targets():
    spec = load_spec_dict()
    personas = [
        _persona("n1", "north", {"t1": "high"}),
        _persona("n2", "north", {"t1": "high"}),
        _persona("s1", "south", {"t1": "low"}, weight=3.0),
    ]
    targets = {
        "t1": {None: np.array([0.5, 0.0, 0.5]), "north": np.array([0, 0, 1.0]), "south": np.array([0.5, 0.5, 0])}
    }
    scores = score({"t1": ["high", "high", "low"]}, personas, spec, targets)
    # weighted: low 3 / 5, high 2 / 5 against 0.5 / 0.5: a tenth of the answers is two steps off
    assert scores.overall.tvd == pytest.approx(0.1) and scores.overall.alignment == pytest.approx(1 - 0.1 * 2 / 2)
    assert scores.groups["north"].tvd == 0.0
    assert scores.groups["south"].tvd == pytest.approx(0.5) and scores.groups["south"].alignment == pytest.approx(0.75)
    # a group nobody answered for has no figure, rather than a made-up one
    assert score({"t1": [None, None, "low"]}, personas, spec, targets).groups["north"].tvd is None


def load_spec_dict():
    from polypref.population.spec import SurveySpec

    return SurveySpec.model_validate({**spec_dict(), "path": "tiny.yaml"})


def test_persona_free_stand_in_takes_the_weighted_modal_answer():
    spec = load_spec_dict()
    from polypref.population.sample import Population

    personas = (
        _persona("a", "north", {"t1": "high", "t2": "low"}),
        _persona("b", "north", {"t1": "high", "t2": "mid"}),
        _persona("c", "south", {"t1": "low", "t2": None}, weight=3.0),
    )
    population = Population(spec, personas, {}, {}, 3, 3)
    free = persona_free(population)
    assert free.attitudes == {"t1": "low", "t2": "low"}  # t1: weight 3 beats 2; t2: a 1-1 tie goes to the first
    assert free.positions == {"t1": 0.0, "t2": 0.0}
    assert free.portrayal == "" and free.attributes == {}
    assert persona_free(population).id == free.id  # stable: the store keys its judgments by content


def test_spec_question_wording():
    spec = load_spec_dict()
    topic = spec.attitudes.items["t1"].topic
    assert spec.question("t1") == f"What is your view on {topic}?"
    shared = load_spec_dict().model_copy(
        update={"attitudes": spec.attitudes.model_copy(update={"question": "How much do you back {topic}?"})}
    )
    assert shared.question("t1") == f"How much do you back {topic}?"


def test_simulated_personas_score_the_floor_and_beat_the_persona_free_judge(tiny_population, tmp_path):
    population, frame = tiny_population
    report = check(population, frame, load_config().judge, 0, tmp_path)
    assert report.personas_scores == report.floor  # the simulator answers from the true attitudes
    assert report.personas_scores.overall.tvd < 0.05
    assert report.baseline.overall.tvd > report.personas_scores.overall.tvd + 0.1
    assert set(report.personas_scores.groups) == {p.group for p in population.personas}
    assert sum(report.group_personas.values()) == 400
    missing = sum(p.attitudes["t2"] is None for p in population.personas)
    assert report.asked == report.answered == 2 * 400 - missing
    # the --json shape, and back
    data = json.loads(json.dumps(report.as_json()))
    assert set(data["overall"]) == {"tvd", "alignment"} and set(data["baseline"]) == {"overall", "groups"}
    assert FidelityReport.from_json(data) == report


def test_survey_targets_follow_the_survey_weights(tiny_population):
    population, frame = tiny_population
    targets = survey_targets(frame, population.spec, ["t1"])
    south = frame.filter(frame["group"].str.starts_with("south"))
    # the south weighs 3 per respondent: its low answers pull the overall distribution down
    unweighted = distribution(
        np.array([{"low": 0, "mid": 1, "high": 2}[v] for v in frame["v:t1"]]), np.ones(frame.height), 3
    )
    assert targets["t1"][None][0] > unweighted[0]
    assert south.height and all(targets["t1"][g][0] > 0.4 for g in targets["t1"] if g and g.startswith("south"))


def _answering(answer_for: dict[str, str]):
    """A server reply: the option named for the first topic word found in the question, as {"answer": ...}."""

    def reply(body: dict) -> tuple[str, str]:
        question = body["messages"][-1]["content"]
        answer = next((a for key, a in answer_for.items() if key in question), "no idea")
        return json.dumps({"answer": answer}), "stop"

    return reply


def test_openai_backend_asks_every_persona_with_its_answer_held_out(tiny_population, tmp_path):
    population, frame = tiny_population
    spec = population.spec
    first = population.personas[:5]
    topics = {t: spec.attitudes.items[t].topic for t in spec.attitudes.items}
    server = ChatAPIServer(reply=_answering({topics["t1"]: "high", topics["t2"]: "low"}))
    with running(server):
        judge = load_config(overrides=judge_settings(server)).judge
        report = check(population, frame, judge, 0, tmp_path, personas=5)
    bodies = server.bodies
    assert len(bodies) == 5 * 2 + 2  # every persona and topic, then one persona-free question per topic
    with_persona = [b for b in bodies if b["messages"][0]["role"] == "system"]
    assert len(with_persona) == 10
    system_text = (Path(__file__).parents[3] / "prompts" / SYSTEM_TEMPLATE).read_text().split("\n")[1][:40]
    assert all(system_text in b["messages"][0]["content"] for b in with_persona)
    for body in bodies:  # asked for one of the options
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["answer"]["enum"] == spec.scale("t1")
    assert report.answered == report.asked == 10 and report.judge == "openai:served-model"
    # everyone answered "high" on t1: the figures are those of that constant answer
    constant = score({"t1": ["high"] * 5, "t2": ["low"] * 5}, first, spec, survey_targets(frame, spec, ["t1", "t2"]))
    assert report.personas_scores == constant == report.baseline


def test_openai_answers_in_free_text_when_the_server_refuses_the_schema(tiny_population, tmp_path):
    population, frame = tiny_population
    server = ChatAPIServer(refuse_json_schema=True, reply=lambda body: ("Mid.", "stop"))
    with running(server):
        judge = load_config(overrides=judge_settings(server)).judge
        report = check(population, frame, judge, 0, tmp_path, topics=["t1"], personas=3)
    assert report.answered == 3
    assert any("response_format" not in b for b in server.bodies)


def test_unusable_answers_are_asked_again_then_counted(tiny_population, tmp_path):
    population, frame = tiny_population
    server = ChatAPIServer(reply=lambda body: ("I would rather not say.", "stop"))
    with running(server):
        judge = load_config(overrides=[*judge_settings(server), "judge.max_invalid_retries=1"]).judge
        report = check(population, frame, judge, 0, tmp_path, topics=["t1"], personas=2)
    assert len(server.bodies) == (2 + 1) * 2  # each question twice: the first answer, one retry
    assert report.answered == 0 and report.asked == 2
    assert report.personas_scores.overall.tvd is None and report.baseline.overall.tvd is None


@settings(max_examples=60, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "check": st.one_of(st.booleans(), st.text(max_size=3), st.integers(-1, 2)),
            "gate": st.one_of(st.booleans(), st.none()),
            "max_tvd": st.one_of(st.floats(allow_nan=True), st.text(max_size=3)),
            "min_alignment": st.one_of(st.floats(-1, 2), st.none()),
            "personas": st.one_of(st.integers(-2, 5), st.none(), st.text(max_size=2)),
            "topics": st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=2), st.integers()),
            "extra": st.integers(),
        },
    )
)
def test_any_fidelity_section_loads_or_names_its_field(values, tmp_path_factory):
    config = tmp_path_factory.mktemp("cfg") / "build.yaml"
    config.write_text(yaml.safe_dump({"fidelity": values}))
    try:
        loaded = load_config(config)
    except ConfigError as e:
        assert e.source == str(config)
        assert all(field.startswith("fidelity") for field, _ in e.problems), e.problems
        return
    for key, value in values.items():  # what loads is what was written (pydantic's lax coercions aside)
        got = getattr(loaded.fidelity, key)
        if type(got) is type(value) or (isinstance(got, float) and type(value) is int):
            assert got == value


def test_questions_without_an_answer_are_counted_apart(tiny_population, tmp_path):
    population, frame = tiny_population
    server = ChatAPIServer(status=503)
    with running(server):
        judge = load_config(overrides=[*judge_settings(server), "judge.max_retries=0"]).judge
        report = check(population, frame, judge, 0, tmp_path, topics=["t1"], personas=2)
    assert report.no_answer == 2 + 1 and report.answered == 0  # personas' and the baseline's questions
    assert FidelityReport.from_json(report.as_json()).no_answer == 3


def _openai_plan(tiny_config: Path, server: ChatAPIServer, out: Path, *settings: str):
    from polypref import pipeline

    return pipeline.plan(load_config(tiny_config, [*judge_settings(server), *settings]), out)


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_build_takes_the_head_starts_figures_without_asking_again(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    with running(server):
        plan = _openai_plan(tiny_config, server, tmp_path / "out")
        with fidelity_run.head_start(plan):
            # the questions go out before the build's check asks for the figures (here: without it at all)
            _wait_for(lambda: server.requests == 60 * 2 + 2)
            report = fidelity_run.for_build(plan)
        assert server.requests == 60 * 2 + 2  # every persona and topic, then the persona-free questions: once
        assert report.asked == 60 * 2 and report.judge == "openai:served-model"
        # the same figures as the check asked by the build itself, which finds every answer saved
        assert fidelity_run.for_build(plan) == report
        assert server.requests == 60 * 2 + 2


@pytest.mark.parametrize("leaving", ["normally", "on an error"])
def test_a_head_start_the_build_never_takes_is_called_off_on_leaving_and_not_taken_later(
    tiny_config, tmp_path, leaving
):
    server = ChatAPIServer(reply=prefer_the_longer, delay=1.0)  # the first micro-batch is in flight for a second
    with running(server):
        plan = _openai_plan(tiny_config, server, tmp_path / "out", "judge.micro_batch=4", "judge.concurrency=4")
        with contextlib.suppress(RuntimeError), fidelity_run.head_start(plan):
            _wait_for(lambda: server.requests > 0)
            if leaving == "on an error":
                raise RuntimeError("Prefect's server did not start")
        # the micro-batch in flight was answered, and nothing asked after it: no thread is left asking
        _wait_for(lambda: not _head_start_threads())
        assert server.requests == 4
        server.delay = 0
        assert fidelity_run.for_build(plan).answered == 60 * 2  # a later check asks for itself the rest of it
        assert server.requests == 60 * 2 + 2  # the 4 answered in the head start were saved: none asked twice


def test_a_stop_request_ends_a_head_start_after_its_micro_batch_in_flight(tiny_config, tmp_path):
    from polypref import interrupt
    from polypref.errors import Interrupted

    server = ChatAPIServer(reply=prefer_the_longer, delay=1.0)
    with running(server):
        plan = _openai_plan(tiny_config, server, tmp_path / "out", "judge.micro_batch=4", "judge.concurrency=4")
        try:
            with fidelity_run.head_start(plan):
                _wait_for(lambda: server.requests > 0)
                interrupt.request_stop("SIGTERM")
                with pytest.raises(Interrupted):
                    fidelity_run.for_build(plan)  # the build's check gets the head start's stop
            _wait_for(lambda: not _head_start_threads())
            with fidelity_run.head_start(plan):  # once a stop is requested, none starts
                assert not _head_start_threads()
        finally:
            interrupt.reset()
        assert server.requests == 4


def _head_start_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == fidelity_run.HEAD_START_THREAD]


def test_no_head_start_when_the_check_is_off(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    with running(server):
        plan = _openai_plan(tiny_config, server, tmp_path / "out", "fidelity.check=false")
        with fidelity_run.head_start(plan):
            assert not _head_start_threads()
            time.sleep(0.5)
        assert server.requests == 0


def test_no_head_start_when_the_build_holds_the_figures(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    with running(server):
        plan = _openai_plan(tiny_config, server, tmp_path / "out")
        fidelity_report.save(plan, fidelity_run.for_build(plan))
        asked = server.requests
        with fidelity_run.head_start(plan):
            assert not _head_start_threads()
            time.sleep(0.5)
        assert server.requests == asked  # saved figures will do
        with fidelity_run.head_start(plan, reuse=False):  # --overwrite: asked again
            _wait_for(lambda: server.requests > asked)
