"""What the OpenAI-compatible judge remembers and tells about a server's limits, against a real local server.

Everything is real: tests/openai_api.py's HTTP server, the openai client, the judge's limiter and retries. The
server counts what it answered, so the tests count the 400s and 429s a build would have cost.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Iterator

import pytest

from polypref.judges.llm import Completion, LLMJudge, Request
from polypref.llms.openai_wire import OpenAIJudgeConfig
from polypref.llms.ratelimit import backoff_delay, retry_note
from tests.openai_api import ChatAPIServer, serve

CONCURRENCY = 2  # requests in flight per endpoint: the most that can be sent before the first refusal is back


def make_judge(base_url: str | list[str], **settings: object) -> LLMJudge:
    config = OpenAIJudgeConfig(
        model="served-model",
        base_url=base_url,
        api_key_env=None,
        concurrency=CONCURRENCY,
        max_concurrency=CONCURRENCY,
        **settings,
    )
    return LLMJudge(config, seed=0)


def requests(start: int, count: int, options: tuple[str, ...] | None = None) -> list[Request]:
    return [
        Request(i, 0, [{"role": "user", "content": f"question {i}"}], i, options) for i in range(start, start + count)
    ]


def generate_at_once(judge: LLMJudge, *batches: list[Request]) -> list[list[Completion]]:
    """Micro-batches sent at the same time, as shard threads send them: they share the judge's loop and limits."""
    results: list[list[Completion]] = [[] for _ in batches]

    def one(i: int) -> None:
        results[i] = judge._generate(batches[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def formats(server: ChatAPIServer) -> list[str]:
    return [(body.get("response_format") or {}).get("type", "none") for body in server.bodies]


@pytest.fixture
def refusing() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(refuse_json_schema=True))


@pytest.fixture
def accepting() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer())


# -- a refused response_format is remembered per endpoint (issue 24, item 6) ------------------------------------


def test_a_refused_json_schema_is_not_asked_again_across_micro_batches_and_concurrent_requests(refusing):
    judge = make_judge(refusing.base_url)
    try:
        first = generate_at_once(judge, requests(0, 16), requests(16, 16))  # 32 requests queued at once
        refused_then = refusing.statuses.count(400)
        later = judge._generate(requests(32, 16))
    finally:
        judge.close()
    # only the requests already in flight when the first refusal came back were sent as json_schema; before the
    # fix every queued request had picked its format before waiting for a slot, and each got its own 400
    assert 1 <= refused_then <= CONCURRENCY, refusing.statuses
    assert refusing.statuses.count(400) == refused_then  # the next micro-batch goes straight to the fallback
    assert formats(refusing).count("json_schema") == refused_then
    answers = [c for batch in [*first, later] for c in batch]
    assert [c.error for c in answers] == [None] * 48
    assert {c.response_format for c in answers} == {"json_object"}


def test_each_endpoint_of_a_fleet_keeps_its_own_response_format(refusing, accepting):
    judge = make_judge([refusing.base_url, accepting.base_url])
    try:
        answers = [c for batch in generate_at_once(judge, requests(0, 20), requests(20, 20)) for c in batch]
        answers += judge._generate(requests(40, 20))
    finally:
        judge.close()
    assert [c.error for c in answers] == [None] * 60
    assert 1 <= refusing.statuses.count(400) <= CONCURRENCY
    # only requests in flight when the first refusal came back went as json_schema, each refused once; they may
    # reach the server after the first fallbacks, so their count is what is checked, not their place
    assert formats(refusing).count("json_schema") == refusing.statuses.count(400)
    assert set(formats(refusing)) == {"json_schema", "json_object"}
    # the endpoint that never refused keeps the structured output it supports
    assert accepting.requests > 0 and set(formats(accepting)) == {"json_schema"}
    assert accepting.statuses.count(400) == 0


def test_a_refused_options_schema_is_remembered_too(refusing):
    judge = make_judge(refusing.base_url)
    try:
        answers = [
            c for b in generate_at_once(judge, requests(0, 12, ("yes", "no")), requests(12, 12, ("a", "b"))) for c in b
        ]
        refused_then = refusing.statuses.count(400)
        answers += judge._generate(requests(24, 12, ("yes", "no")))
    finally:
        judge.close()
    assert [c.error for c in answers] == [None] * 36
    # the options schema, then the verdict's: each refused at most once per request in flight
    assert 1 <= refused_then <= 2 * CONCURRENCY, refusing.statuses
    assert refusing.statuses.count(400) == refused_then
    assert {c.response_format for c in answers[24:]} == {"json_object"}


# -- a capped Retry-After is logged as the wait taken (issue 24, item 7) --------------------------------------


def test_a_huge_retry_after_is_capped_and_logged_as_the_wait_taken(caplog):
    caplog.set_level(logging.WARNING, logger="polypref.llms.openai")
    done: list[Completion] = []
    for server in serve(ChatAPIServer(throttle=1, retry_after="100000")):  # the first request: 429, come back tomorrow
        judge = make_judge(server.base_url, backoff_max_s=0.05, max_retries=2)
        thread = threading.Thread(target=lambda j=judge: done.extend(j._generate(requests(0, 1))), daemon=True)
        thread.start()
        thread.join(timeout=20)  # the endpoint must not be paused for the 100000 s asked either
        judge.close()
        assert not thread.is_alive(), "the retry waited for the uncapped Retry-After"
        assert server.statuses == [429, 200]
        waited = server.received_at[1] - server.received_at[0]
    assert done[0].error is None
    found = re.search(r"retrying in ([0-9.]+) s \(the server asked for 100000 s; capped\)", caplog.text)
    assert found, caplog.text
    assert "HTTP 429: Rate limit reached" in caplog.text
    assert float(found[1]) == pytest.approx(waited, abs=0.3)  # the wait actually taken, not the one asked for
    assert float(found[1]) <= 0.06  # the cap and its 10% jitter, not the cap and a second of jitter


def test_a_capped_wait_does_not_come_back_as_jitter():
    rng = random.Random(0)
    waits = [backoff_delay(0, 1.0, 0.05, 100000.0, rng) for _ in range(200)]
    assert min(waits) >= 0.05 and max(waits) <= 0.06  # jitter from the wait taken (at least 0.1 s), not the ask


def test_retry_notes_say_what_was_waited_and_what_was_asked():
    assert retry_note(60.4, 100000, 60) == "retrying in 60 s (the server asked for 100000 s; capped)"
    assert retry_note(2.5, 2.0, 60) == "retrying in 2.5 s"
    assert retry_note(0.731, None, 60) == "retrying in 0.73 s"
