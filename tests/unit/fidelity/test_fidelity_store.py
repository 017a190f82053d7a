"""Issue 25, item 4: the fidelity check's answers are saved in the build folder as they arrive, so a check that
was stopped (or left questions unanswered) asks again only what has no saved answer; and the stop message says
only what is saved.

The build's check (``pipeline.fidelity.for_build`` / ``head_start``) against tests/openai_api.py's real HTTP server,
counting the survey questions it receives, in a folder that holds a build (a new folder's check saves there too
once build.state declares ``BuildState.fidelity_dir``: see tests/integration/test_fidelity_store.py).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from polypref import interrupt, pipeline, progress
from polypref.build import status as folder_status
from polypref.config import load_config
from polypref.errors import Interrupted
from polypref.fidelity.store import answers_saved
from polypref.pipeline import fidelity as fidelity_run
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, request_kind, serve

running = contextlib.contextmanager(serve)
PERSONAS, TOPICS = 60, 2
QUESTIONS = PERSONAS * TOPICS + TOPICS  # every persona on every topic, and each topic once without a persona


def plan_for(tiny_config: Path, server: ChatAPIServer, out: Path, *settings: str):
    """The build's plan, its folder prepared (a rerun's, or a refresh's: the folder holds the build)."""
    plan = pipeline.plan(load_config(tiny_config, [*judge_settings(server), *settings]), out)
    pipeline.prepare_output(plan)
    return plan


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def messages(bodies: list[dict]) -> set[str]:
    """What the requests asked (two personas with the same portrayal ask the same question: one answer serves)."""
    return {json.dumps(body["messages"], sort_keys=True) for body in bodies}


def saved(plan) -> int:
    return answers_saved(plan.state.fidelity_dir)


def test_a_stopped_head_start_keeps_its_answers_and_the_build_asks_only_the_rest(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer, delay=0.5)
    with running(server):
        plan = plan_for(tiny_config, server, tmp_path / "out", "judge.micro_batch=4", "judge.concurrency=4")
        try:
            with fidelity_run.head_start(plan):
                wait_for(lambda: server.requests > 0)
                interrupt.request_stop("SIGINT")  # Ctrl-C while the first micro-batch is in flight
                with pytest.raises(Interrupted):
                    fidelity_run.for_build(plan)
        finally:
            interrupt.reset()
        first = server.requests
        assert first == 4 and saved(plan) == 4  # what was answered is in the folder, not only in memory
        server.delay = 0
        report = fidelity_run.for_build(plan)  # the rerun's check
    assert server.requests - first == QUESTIONS - 4  # only the questions without a saved answer
    assert report.answered == report.asked == PERSONAS * TOPICS and report.no_answer == 0
    assert saved(plan) == QUESTIONS


def test_a_stop_between_micro_batches_of_the_builds_own_check_loses_none(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer, delay=0.2)
    with running(server):
        plan = plan_for(tiny_config, server, tmp_path / "out", "judge.micro_batch=8", "judge.concurrency=8")
        stopper = threading.Thread(target=lambda: (wait_for(lambda: server.requests >= 17), interrupt.request_stop()))
        stopper.start()
        try:
            with pytest.raises(Interrupted):
                fidelity_run.for_build(plan)
        finally:
            stopper.join()
            interrupt.reset()
        asked = server.requests
        assert saved(plan) == asked  # every answer that came is saved (the micro-batch in flight too)
        server.delay = 0
        report = fidelity_run.for_build(plan)
    before, after = (messages(server.bodies[:asked]), messages(server.bodies[asked:]))
    assert before.isdisjoint(after) and len(after) == server.requests - asked  # none asked twice
    assert report.answered == report.asked and server.requests <= QUESTIONS


def test_questions_left_unanswered_are_asked_again_and_only_they(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer, fail_text="road repair")  # every question on one topic: 503
    with running(server):
        plan = plan_for(tiny_config, server, tmp_path / "out", "judge.max_retries=0")
        first = fidelity_run.for_build(plan)
        assert first.no_answer == PERSONAS + 1 and saved(plan) == PERSONAS + 1  # the other topic's answers
        server.fail_text = None
        asked = server.requests
        again = fidelity_run.for_build(plan)
    assert server.requests - asked == PERSONAS + 1
    assert again.no_answer == 0 and again.answered == PERSONAS * TOPICS


def test_more_personas_ask_only_the_new_personas_questions(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    with running(server):
        fidelity_run.for_build(plan_for(tiny_config, server, tmp_path / "out"))
        asked = server.requests
        grown = fidelity_run.for_build(plan_for(tiny_config, server, tmp_path / "out", "population.size=64"))
    assert grown.asked == 64 * TOPICS and grown.answered == grown.asked
    assert server.requests - asked == 4 * TOPICS  # the persona-free questions are the same ones: saved


def test_overwrite_asks_everything_again(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    with running(server):
        plan = plan_for(tiny_config, server, tmp_path / "out")
        fidelity_run.for_build(plan)
        fidelity_run.for_build(plan, reuse=False)
        assert server.requests == 2 * QUESTIONS
        assert saved(plan) == QUESTIONS  # the overwrite's answers replace those saved before: one of each
        pipeline.prepare_output(plan, overwrite=True)  # the overwrite then clears the folder: not what it paid for
        fidelity_run.for_build(plan)
    assert server.requests == 2 * QUESTIONS


def test_a_new_folder_stopped_during_its_check_is_still_a_new_folder_to_the_build(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer, delay=0.3)
    with running(server):
        config = load_config(tiny_config, [*judge_settings(server), "judge.micro_batch=4", "judge.concurrency=4"])
        plan = pipeline.plan(config, tmp_path / "out")
        assert pipeline.check_output(plan) is None  # a new folder
        stopper = threading.Thread(target=lambda: (wait_for(lambda: server.requests >= 5), interrupt.request_stop()))
        stopper.start()
        try:
            with pytest.raises(Interrupted):
                fidelity_run.for_build(plan)
        finally:
            stopper.join()
            interrupt.reset()
        assert pipeline.check_output(plan) is None  # what the check saved does not make it a stranger's folder
        pipeline.prepare_output(plan)


def test_the_stop_message_says_what_is_saved_for_its_own_judge(tiny_config, tmp_path):
    out = tmp_path / "out"
    server = ChatAPIServer(reply=prefer_the_longer)
    plan = pipeline.plan(load_config(tiny_config, judge_settings(server)), out)
    assert fidelity_run.saved_summary(plan) == f"nothing was saved in {out} yet"
    assert not out.exists()
    with running(server):
        fidelity_run.for_build(plan)
    saved = f"{QUESTIONS} answers to the fidelity check's questions are saved in {out}"
    assert fidelity_run.saved_summary(plan) == saved
    other = pipeline.plan(load_config(tiny_config, [*judge_settings(server), "judge.model=another-model"]), out)
    assert fidelity_run.saved_summary(other) == f"nothing was saved in {out} yet"  # another judge's answers


def test_the_questions_count_in_the_builds_progress_asked_or_found_saved(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    trackers = [progress.Tracker(), progress.Tracker()]
    with running(server):
        for tracker, size in zip(trackers, (60, 64), strict=True):
            with progress.tracking(tracker):
                fidelity_run.for_build(plan_for(tiny_config, server, tmp_path / "out", f"population.size={size}"))
    first, grown = (t.snapshot() for t in trackers)
    assert first.phase == progress.FIDELITY and first.done == first.total == QUESTIONS
    assert grown.done == grown.total == 64 * TOPICS + TOPICS  # the saved answers count as done, like the new ones


def test_the_plan_counts_every_request_the_build_makes_by_kind(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    plan = pipeline.plan(load_config(tiny_config, judge_settings(server)), tmp_path / "out")
    planned = plan.planned_requests()
    assert planned["fidelity_questions"] == QUESTIONS  # what a check asks, as counted by the server above
    assert planned["persona_free"] == len(plan.pairs) * 2 and planned["judgments"] == plan.num_units
    smaller = pipeline.plan(load_config(tiny_config, [*judge_settings(server), "fidelity.personas=5"]), tmp_path)
    assert smaller.planned_requests()["fidelity_questions"] == 5 * TOPICS + TOPICS
    simulated = pipeline.plan(load_config(tiny_config), tmp_path / "sim")
    assert simulated.planned_requests() == {}  # the simulator asks no model


def test_the_card_counts_every_request_the_build_made_by_kind(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    prices = ["judge.prices={prompt_per_million: 1.0, completion_per_million: 2.0}"]
    with running(server):
        plan = pipeline.plan(load_config(tiny_config, [*judge_settings(server), *prices]), tmp_path / "out")
        fidelity_run.for_build(plan)  # the flow's check, before the shards
        summary = run_without_prefect(plan)
        kinds = Counter(request_kind(body) for body in server.bodies)
    made = summary["requests_by_kind"]
    assert made["judgments"]["requests"] == kinds["judgment"] and kinds["judgment"] > 0
    assert made["persona_free"]["requests"] == kinds["persona-free"] > 0
    assert made["fidelity_questions"]["requests"] == kinds["survey"] == QUESTIONS
    assert made["total"]["requests"] == server.requests  # every request the server saw, and no other
    assert made["persona_free"]["prompt_tokens"] > 0 and made["persona_free"]["cost_usd"] > 0
    # the check's tokens as the server reported them (100 prompt, 20 completion a request), priced as the judge's
    asked = made["fidelity_questions"]
    assert (asked["prompt_tokens"], asked["completion_tokens"]) == (100 * QUESTIONS, 20 * QUESTIONS)
    assert asked["cost_usd"] == pytest.approx(QUESTIONS * (100 * 1.0 + 20 * 2.0) / 1e6)
    card = (tmp_path / "out" / "README.md").read_text()
    row = f"| fidelity_questions | {QUESTIONS} | {100 * QUESTIONS} | {20 * QUESTIONS} | {asked['cost_usd']} |"
    assert row in card and f"| total | {server.requests} |" in card
    figures = folder_status.read(tmp_path / "out")  # `polypref status`: the same, read off the folder
    assert figures["requests"] == kinds["judgment"] + kinds["persona-free"]
    assert figures["other_requests"] == {"fidelity_questions": QUESTIONS, "generation": 0}
