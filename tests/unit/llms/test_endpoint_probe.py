"""Issue 25, item 6: a dead endpoint says so within seconds, ``attempts`` counts the requests made, and a stop
ends retries that wait out their backoff.

Against real HTTP: tests/openai_api.py's server (its ``GET /v1/models`` and knobs), closed ports on 127.0.0.1
and a host under ``.invalid`` (a name that never resolves). Everything on our side is the real client, judge,
limiter and probe.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polypref import interrupt, pipeline
from polypref.config import load_config
from polypref.errors import EndpointUnreachable, JudgeFatalError
from polypref.judges import collect_verdicts
from polypref.judges.base import NO_ANSWER, error_category
from polypref.judges.llm import Completion, LLMJudge, Request
from polypref.llms.openai_wire import OpenAIJudgeConfig
from polypref.llms.ratelimit import AdaptiveLimiter, EndpointPool
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

TOKEN = "tok-probe-5c1e0b"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_judge(base_url: str | list[str], **settings: object) -> LLMJudge:
    config = OpenAIJudgeConfig(model="served-model", base_url=base_url, api_key_env=None, **settings)
    return LLMJudge(config, seed=0)


def requests(count: int = 4) -> list[Request]:
    return [Request(i, 0, [{"role": "user", "content": f"question {i}"}], i) for i in range(count)]


def generate(judge: LLMJudge, batch: list[Request]) -> list[Completion]:
    try:
        return judge._generate(batch)
    finally:
        judge.close()


@pytest.fixture
def listing() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(models=["served-model", "other-model"]))


# -- the probe: an endpoint that cannot serve stops the judge before its first request -------------------------


def test_a_closed_port_stops_at_once_naming_the_endpoint_and_the_cause() -> None:
    port = closed_port()
    judge = make_judge(f"http://judge:{TOKEN}@127.0.0.1:{port}/v1", max_retries=8, backoff_base_s=30)
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as stopped:
        generate(judge, requests())
    took = time.monotonic() - started
    message = str(stopped.value)
    assert took < 5, took  # not 8 retries with up to a minute of backoff each
    assert f"http://***@127.0.0.1:{port}/v1 (connection refused)" in message and "judge.base_url" in message
    assert TOKEN not in message
    assert isinstance(stopped.value, JudgeFatalError)  # a setup problem: every request would fail


def test_a_host_that_does_not_resolve_is_named_as_such() -> None:
    with pytest.raises(EndpointUnreachable, match=r"nohost\.invalid/v1 \(unknown host"):
        generate(make_judge("http://nohost.invalid/v1"), requests())


def test_every_endpoint_of_a_fleet_is_probed_and_only_the_dead_one_named(listing: ChatAPIServer) -> None:
    port = closed_port()
    with pytest.raises(EndpointUnreachable) as stopped:
        generate(make_judge([listing.base_url, f"http://127.0.0.1:{port}/v1"]), requests())
    assert f"127.0.0.1:{port}/v1 (connection refused)" in str(stopped.value)
    assert listing.base_url not in str(stopped.value)
    assert listing.listed == 1 and listing.requests == 0  # probed, and nothing asked before the stop


@pytest.mark.parametrize(("status", "advice"), [(401, "judge.api_key_env"), (403, "access")])
def test_a_refused_key_is_a_setup_error_found_by_the_probe(status: int, advice: str) -> None:
    for server in serve(ChatAPIServer(status=status, echo_headers=True)):
        config = OpenAIJudgeConfig(model="served-model", base_url=server.base_url, api_key_env="POLYPREF_PROBE_KEY")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("POLYPREF_PROBE_KEY", TOKEN)
            judge = LLMJudge(config, seed=0)
        with pytest.raises(JudgeFatalError) as fatal:
            generate(judge, requests())
        assert not isinstance(fatal.value, EndpointUnreachable)  # exit 2: the key, not the endpoint's health
        assert f"answered HTTP {status}" in str(fatal.value) and advice in str(fatal.value)
        assert TOKEN not in str(fatal.value)  # the server echoed the Authorization header
        assert server.requests == 0


def test_a_model_the_endpoint_does_not_serve_stops_naming_what_it_lists(listing: ChatAPIServer) -> None:
    judge = LLMJudge(OpenAIJudgeConfig(model="no-such-model", base_url=listing.base_url, api_key_env=None), seed=0)
    with pytest.raises(JudgeFatalError, match=r"HTTP 404: .*it lists served-model, other-model; not no-such-model"):
        generate(judge, requests(16))
    assert listing.requests == 1  # the one-token check that settles it, not the micro-batch


def test_a_listed_model_costs_one_listing_however_many_calls(listing: ChatAPIServer) -> None:
    judge = make_judge(listing.base_url)
    calls = [threading.Thread(target=judge._generate, args=(requests(),)) for _ in range(3)]
    try:
        for call in calls:
            call.start()
        for call in calls:
            call.join(timeout=30)
        judge._generate(requests())
    finally:
        judge.close()
    assert listing.listed == 1 and listing.requests == 4 * 4


def test_a_server_without_a_models_route_is_asked_anyway() -> None:
    for server in serve(ChatAPIServer(models_route=False)):
        answers = generate(make_judge(server.base_url), requests())
        assert [c.error for c in answers] == [None] * 4
        assert server.listed == 1 and server.requests == 1 + 4  # the one-token check, then the work


def test_a_wrong_base_url_is_found_by_the_check_the_listing_could_not_make() -> None:
    for server in serve(ChatAPIServer()):
        wrong = server.base_url.removesuffix("/v1")  # /models and /chat/completions: both 404 here
        with pytest.raises(JudgeFatalError, match=r"HTTP 404.*judge\.base_url") as fatal:
            generate(make_judge(wrong), requests())
        assert not isinstance(fatal.value, EndpointUnreachable)


# -- attempts: every request made for a unit ---------------------------------------------------------------


def test_attempts_count_transport_retries(tiny_config: Path, tmp_path: Path) -> None:
    for server in serve(ChatAPIServer(status=503)):
        settings = [*judge_settings(server), "judge.max_retries=2", "judge.backoff_base_s=0.01"]
        config = load_config(tiny_config, [*settings, "judge.backoff_max_s=0.02", "population.size=2"])
        plan = pipeline.plan(config, tmp_path / "out")
        judge = LLMJudge(config.judge, config.seed, tmp_path / "judge")
        try:
            verdicts = collect_verdicts(judge, plan.batch(0))
        finally:
            judge.close()
        assert {error_category(e) for e in verdicts["error"]} == {NO_ANSWER}
        assert (verdicts["attempts"] == 3).all()  # the first try and 2 retries, as the server counted them
        assert server.requests == 3 * verdicts.height


def test_a_unit_answered_after_a_throttled_try_reads_two_attempts() -> None:
    for server in serve(ChatAPIServer(throttle=1)):  # the first request: 429
        judge = make_judge(server.base_url, backoff_base_s=0.01, backoff_max_s=0.02, concurrency=1)
        answers = generate(judge, requests(2))
    assert [c.error for c in answers] == [None, None]
    assert sorted(getattr(c, "requests", None) for c in answers) == [1, 2]


# -- a stop ends waiting retries at once ------------------------------------------------------------------


def test_a_stop_during_backoff_ends_the_call_at_once() -> None:
    done: list[Completion] = []
    for server in serve(ChatAPIServer(status=503)):
        judge = make_judge(server.base_url, max_retries=8, backoff_base_s=30, backoff_max_s=60, concurrency=4)
        call = threading.Thread(target=lambda j=judge: done.extend(j._generate(requests())), daemon=True)
        call.start()
        deadline = time.monotonic() + 30
        while server.requests < 4:  # each got its 503 and waits for its retry (up to 30 s)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        try:
            stopped = time.monotonic()
            interrupt.request_stop("SIGINT")
            call.join(timeout=10)
            took = time.monotonic() - stopped
        finally:
            interrupt.reset()
            judge.close()
        assert not call.is_alive() and took < 2, took
        assert server.requests == 4  # nothing sent after the stop
    assert [error_category(c.error) for c in done] == [NO_ANSWER] * 4
    assert all("stopped before retry 1 of 8" in (c.error or "") for c in done)


def test_a_stop_ends_a_wait_for_a_slot_of_a_paused_endpoint() -> None:
    async def scenario() -> int | None:
        limiter = AdaptiveLimiter(1, 1)
        pool = EndpointPool([limiter])
        limiter.pause(100)  # a rate-limit window that resets in 100 s
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(pool.acquire_unless(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await pool.wake()
        return await asyncio.wait_for(waiting, timeout=2)

    assert asyncio.run(scenario()) is None


def test_the_builds_first_check_names_a_closed_port_or_unknown_host_before_any_request(
    tiny_config, tmp_path, monkeypatch
):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    port = closed_port()
    server = ChatAPIServer()

    def plan(*settings: str):
        return pipeline.plan(load_config(tiny_config, [*judge_settings(server), *settings]), tmp_path / "out")

    for _ in serve(server):
        pipeline.check_endpoints(plan())  # a server that takes connections: nothing to say
        dead = f"http://u:{TOKEN}@127.0.0.1:{port}/v1"
        with pytest.raises(EndpointUnreachable) as refused:
            pipeline.check_endpoints(plan(f"judge.base_url=[{server.base_url}, {dead}]"))
        assert f"judge.base_url: cannot reach http://***@127.0.0.1:{port}/v1 (connection refused)" in str(refused.value)
        assert TOKEN not in str(refused.value)
    assert server.requests == 0  # a connection, never a request
    unknown = "judge.base_url=http://judge.invalid/v1"
    with pytest.raises(EndpointUnreachable, match=r"judge\.invalid/v1 \(unknown host"):
        pipeline.check_endpoints(plan(unknown))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # a work pool's server (never called here)
    pipeline.check_endpoints(plan(unknown, "runner.kind=workpool"))  # the workers' to reach, not this machine's
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")  # a proxy stands between: the client's to reach
    pipeline.check_endpoints(plan(unknown))


def test_a_build_whose_store_holds_every_judgment_needs_no_endpoint(tiny_config, tmp_path):
    server = ChatAPIServer(reply=prefer_the_longer)
    for _ in serve(server):
        config = load_config(tiny_config, judge_settings(server))
        run_without_prefect(pipeline.plan(config, tmp_path / "out"))
    dead = load_config(tiny_config, [*judge_settings(server), f"judge.base_url=http://127.0.0.1:{closed_port()}/v1"])
    pipeline.check_endpoints(pipeline.plan(dead, tmp_path / "out"))  # a rerun: nothing to ask, nothing to reach
