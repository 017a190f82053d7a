"""The OpenAI-compatible judge under fault injection.

The only stub here is ``ChatStub``, an httpx2 MockTransport handler speaking /v1/chat/completions (and the
Batch API), which exists to inject failures a real server will not produce on demand. Everything between it and
the Parquet files is the real code: client, retries, limiter, parsing, pipeline, filters and writers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx2
import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.judges.llm import Request
from polypref.judges.openai import OpenAIJudge, batch_lines, chat_body

GOOD = {"rationale": "Closer to what I think.", "choice": "A", "strength": 4, "confidence": 80}
UNITS = 2 * 6 * 2  # personas x pairs x orders


def completion(body: dict, content: str | None, finish: str = "stop", refusal: str | None = None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class ChatStub:
    """Answers each chat request with ``reply(call_number, body)``; records what it was sent."""

    def __init__(self, reply: Callable[[int, dict, httpx2.Request], httpx2.Response]):
        self.reply = reply
        self.bodies: list[dict] = []
        self.headers: list[httpx2.Headers] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        return self.reply(len(self.bodies), body, request)


def ok(body: dict, content: dict | str = GOOD) -> httpx2.Response:
    text = content if isinstance(content, str) else json.dumps(content)
    return httpx2.Response(200, json=completion(body, text), headers={"x-ratelimit-remaining-requests": "50"})


# an openai judge pointed at the stub, on the tiny survey
STUB_JUDGE = [
    "population.size=2",
    "judge.backend=openai",
    "judge.model=stub-model",
    "judge.base_url=http://stub.invalid/v1",
    "judge.api_key_env=null",
]


def build(tiny_config: Path, tmp_path: Path, handler, *overrides: str) -> tuple[dict, pl.DataFrame, OpenAIJudge]:
    settings = [
        *STUB_JUDGE,
        "judge.max_retries=4",
        "judge.backoff_base_s=0.01",
        "judge.backoff_max_s=0.05",
        "judge.micro_batch=8",
        "judge.concurrency=4",
        *overrides,
    ]
    config = load_config(tiny_config, settings)
    out = tmp_path / "out"
    plan = pipeline.plan(config, out)
    run = pipeline.prepare_output(plan)
    judge = OpenAIJudge(config.judge, config.seed, plan.state_path("judge"), transport=httpx2.MockTransport(handler))
    reports = [pipeline.run_shard(plan, run, i, judge) for i in range(plan.num_shards)]
    summary = pipeline.finalize(plan, run, reports, judge.info)
    return summary, pl.read_parquet(out / "data" / "judgments"), judge


def test_happy_path_structured_output_tokens_and_cost(tiny_config, tmp_path):
    stub = ChatStub(lambda n, body, req: ok(body))
    summary, judgments, _ = build(
        tiny_config,
        tmp_path,
        stub,
        "judge.prices.prompt_per_million=2.0",
        "judge.prices.completion_per_million=8.0",
    )
    assert judgments.height == UNITS and judgments["error"].null_count() == UNITS
    assert judgments["confidence"].to_list() == [0.8] * UNITS  # the model's 80 stored as 0.8
    body = stub.bodies[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["choice"]["enum"] == ["A", "B"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"] and isinstance(body["seed"], int)
    assert summary["tokens"] == {"prompt_tokens": 100 * UNITS, "completion_tokens": 20 * UNITS}
    assert summary["cost_usd"] == pytest.approx(UNITS * (100 * 2.0 + 20 * 8.0) / 1e6)
    assert judgments["prompt_template"][0].startswith("judge_system.j2:")
    assert (judgments["judge_backend"] == "openai").all() and not judgments["simulated"].any()


def test_429_storm_with_retry_after_is_waited_out(tiny_config, tmp_path):
    def reply(n, body, req):
        if n <= 30:
            return httpx2.Response(429, headers={"retry-after": "0.02"}, json={"error": {"message": "rate limited"}})
        return ok(body)

    summary, judgments, judge = build(tiny_config, tmp_path, ChatStub(reply), "judge.max_retries=12")
    assert judgments["error"].null_count() == UNITS
    assert judge.limiter.throttled == 30
    assert judge.limiter.lowest_limit < 4  # it backed off ...
    assert judge.limiter.limit > judge.limiter.lowest_limit  # ... and grew back on success
    assert summary["errors"] == {}


def test_server_errors_are_retried(tiny_config, tmp_path):
    seen: dict[str, int] = {}

    def reply(n, body, req):
        key = json.dumps(body["messages"]) + str(body["seed"])
        seen[key] = seen.get(key, 0) + 1
        return httpx2.Response(503, json={"error": {"message": "overloaded"}}) if seen[key] <= 2 else ok(body)

    stub = ChatStub(reply)
    _, judgments, _ = build(tiny_config, tmp_path, stub)
    assert judgments["error"].null_count() == UNITS
    assert len(stub.bodies) == 3 * UNITS


def test_timeouts_become_recorded_invalid_judgments(tiny_config, tmp_path):
    def reply(n, body, req):
        raise httpx2.ReadTimeout("no answer", request=req)

    stub = ChatStub(reply)
    summary, judgments, _ = build(tiny_config, tmp_path, stub, "judge.max_retries=2")
    assert len(stub.bodies) == 3 * UNITS  # first try + 2 retries each
    assert judgments["error"].str.starts_with("timeout").all()
    assert summary["reasons"] == {"invalid": UNITS} and summary["errors"] == {"timeout": UNITS}
    assert summary["preferences"] == 0


def test_truncated_output_is_asked_again_then_recorded(tiny_config, tmp_path):
    def once(n, body, req):
        cut = '{"rationale": "Closer to what I th'
        unit = json.dumps(body["messages"])  # a retry asks again with a new seed
        first_time = unit not in seen_units
        seen_units.add(unit)
        return httpx2.Response(200, json=completion(body, cut, "length")) if first_time else ok(body)

    seen_units: set[str] = set()
    summary, judgments, _ = build(tiny_config, tmp_path, ChatStub(lambda n, b, r: once(n, b, r)))
    assert judgments["error"].null_count() == UNITS
    assert summary["retries"] == UNITS and summary["recovered_by_retry"] == UNITS
    assert (judgments["attempts"] == 2).all()


def test_always_truncated_and_garbage_and_refusals_are_kept_with_raw_text(tiny_config, tmp_path):
    def reply(n, body, req):
        kind = n % 3
        if kind == 0:
            return httpx2.Response(200, json=completion(body, '{"rationale": "Clo', "length"))
        if kind == 1:
            return ok(body, "{{{ not json at all")
        return httpx2.Response(200, json=completion(body, None, refusal="I can't play this persona."))

    summary, judgments, _ = build(tiny_config, tmp_path, ChatStub(reply), "judge.max_invalid_retries=1")
    assert judgments.height == UNITS and judgments["error"].null_count() == 0
    assert (
        set(summary["errors"]) <= {"truncated", "unparseable", "refusal"} and sum(summary["errors"].values()) == UNITS
    )
    assert (judgments["attempts"] == 2).all()
    assert judgments["raw"].null_count() == 0
    refused = judgments.filter(pl.col("error").str.starts_with("refusal"))
    assert refused.height and (refused["raw"] == "I can't play this persona.").all()


def test_client_errors_are_recorded_not_retried(tiny_config, tmp_path):
    stub = ChatStub(lambda n, body, req: httpx2.Response(413, json={"error": {"message": "prompt too large"}}))
    _summary, judgments, _ = build(tiny_config, tmp_path, stub, "judge.response_format=json_schema")
    assert len(stub.bodies) == UNITS
    assert judgments["error"].str.contains("HTTP 413: prompt too large").all()


@pytest.mark.parametrize(("status", "advice"), [(401, "judge.api_key_env"), (404, "judge.model")])
def test_setup_errors_stop_the_run_and_leave_the_shard_to_redo(tiny_config, tmp_path, status, advice):
    from polypref.errors import PolyprefError

    stub = ChatStub(lambda n, body, req: httpx2.Response(status, json={"error": {"message": "nope"}}))
    with pytest.raises(PolyprefError, match=advice):
        build(tiny_config, tmp_path, stub)
    assert len(stub.bodies) <= 8  # stopped within the first micro-batch, not after every unit
    assert not list((tmp_path / "out" / ".polypref").glob("shards/*.json"))


def test_servers_without_json_schema_fall_back(tiny_config, tmp_path):
    def reply(n, body, req):
        kind = (body.get("response_format") or {}).get("type")
        if kind == "json_schema":
            return httpx2.Response(400, json={"error": {"message": "response_format json_schema unsupported"}})
        if kind == "json_object":
            return httpx2.Response(500, json={"error": {"message": "json_object is not supported either"}})
        return ok(body, "Here you go: " + json.dumps(GOOD))  # plain text, extracted tolerantly

    stub = ChatStub(reply)
    _, judgments, judge = build(tiny_config, tmp_path, stub)
    assert judgments["error"].null_count() == UNITS
    assert judge._format == "none"
    assert "response_format" not in stub.bodies[-1]


def test_api_key_comes_from_the_environment_and_goes_nowhere(tiny_config, tmp_path, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("POLYPREF_TEST_KEY", secret)
    stub = ChatStub(lambda n, body, req: ok(body))
    build(tiny_config, tmp_path, stub, "judge.api_key_env=POLYPREF_TEST_KEY")
    assert stub.headers[0]["authorization"] == f"Bearer {secret}"
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_missing_key_stops_before_any_work(tiny_config, tmp_path, monkeypatch):
    from polypref.errors import ConfigError

    monkeypatch.delenv("POLYPREF_ABSENT_KEY", raising=False)
    config = load_config(
        tiny_config, ["judge.backend=openai", "judge.model=m", "judge.api_key_env=POLYPREF_ABSENT_KEY"]
    )
    with pytest.raises(ConfigError, match="POLYPREF_ABSENT_KEY is not set"):
        pipeline.plan(config, tmp_path / "out")


# -- Batch API -------------------------------------------------------------------------------------------


class BatchStub:
    """The OpenAI Batch API (files + batches), which no local server implements. A stub by necessity."""

    def __init__(self, fail_first_poll: bool):
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.created = 0
        self.fail_first_poll = fail_first_poll

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/v1")
        if request.method == "POST" and path == "/files":
            file_id = f"file-{len(self.files)}"
            self.files[file_id] = _multipart_file(request)
            return httpx2.Response(
                200,
                json={
                    "id": file_id,
                    "object": "file",
                    "bytes": 1,
                    "created_at": 0,
                    "filename": "in.jsonl",
                    "purpose": "batch",
                    "status": "processed",
                },
            )
        if request.method == "POST" and path == "/batches":
            self.created += 1
            body = json.loads(request.content)
            batch_id = f"batch-{self.created}"
            self.batches[batch_id] = {"input": body["input_file_id"], "polls": 0}
            return httpx2.Response(200, json=self._batch(batch_id, "validating"))
        if request.method == "GET" and path.startswith("/batches/"):
            batch_id = path.rsplit("/", 1)[1]
            state = self.batches[batch_id]
            state["polls"] += 1
            if self.fail_first_poll:
                self.fail_first_poll = False
                raise httpx2.ConnectError("the machine running polypref went down", request=request)
            if state["polls"] < 3:
                return httpx2.Response(200, json=self._batch(batch_id, "in_progress"))
            out_id = f"file-out-{batch_id}"
            self.files[out_id] = self._results(self.files[state["input"]])
            return httpx2.Response(200, json=self._batch(batch_id, "completed", out_id))
        if request.method == "GET" and path.startswith("/files/") and path.endswith("/content"):
            return httpx2.Response(200, content=self.files[path.split("/")[2]])
        return httpx2.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})

    @staticmethod
    def _batch(batch_id: str, status: str, output: str | None = None) -> dict:
        return {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "f",
            "completion_window": "24h",
            "status": status,
            "created_at": 0,
            "output_file_id": output,
        }

    @staticmethod
    def _results(lines: bytes) -> bytes:
        out = []
        for line in lines.decode().splitlines():
            row = json.loads(line)
            body = completion(row["body"], json.dumps(GOOD))
            out.append(
                json.dumps(
                    {
                        "id": "r",
                        "custom_id": row["custom_id"],
                        "response": {"status_code": 200, "body": body},
                        "error": None,
                    }
                )
            )
        return ("\n".join(out[::-1]) + "\n").encode()  # out of order: matching must use custom_id


def _multipart_file(request: httpx2.Request) -> bytes:
    content = request.content
    start = content.index(b"\r\n\r\n", content.index(b'name="file"')) + 4
    return content[start : content.index(b"\r\n--", start)]


def test_batch_api_resumes_its_pending_batch_instead_of_paying_twice(tiny_config, tmp_path):
    stub = BatchStub(fail_first_poll=True)
    args = ("judge.batch_api=true", "judge.batch_poll_s=0.01", "judge.micro_batch=100")
    with pytest.raises(Exception, match=r"went down|Connection"):
        build(tiny_config, tmp_path, stub, *args)
    assert stub.created == 1
    pending = list((tmp_path / "out" / ".polypref" / "judge" / "batches").glob("*.json"))
    assert len(pending) == 1

    summary, judgments, _ = build(tiny_config, tmp_path, stub, *args)  # the same command again
    assert stub.created == 1  # found the pending batch
    assert judgments.height == UNITS and judgments["error"].null_count() == UNITS
    assert summary["tokens"]["prompt_tokens"] == 100 * UNITS
    assert not list((tmp_path / "out" / ".polypref" / "judge" / "batches").glob("*.json"))


def test_batch_lines_are_pure_and_match_live_bodies(tiny_config):
    config = load_config(tiny_config, ["judge.backend=openai", "judge.model=m", "judge.api_key_env=null"]).judge
    requests = [
        Request(0, 0, [{"role": "user", "content": "hi"}], 7),
        Request(1, 1, [{"role": "user", "content": "yo"}], 8),
    ]
    lines = [json.loads(line) for line in batch_lines(config, requests, "json_schema").decode().splitlines()]
    assert [line["custom_id"] for line in lines] == ["u0-a0", "u1-a1"]
    assert lines[1]["body"] == chat_body(config, requests[1], "json_schema")
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["method"] == "POST"


class _DiesOnCall(OpenAIJudge):
    """The real judge, but the process 'dies' on its n-th engine call (as a killed worker would)."""

    def __init__(self, *args, die_on: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.die_on = 0, die_on

    def _generate(self, requests):
        self.calls += 1
        if self.calls == self.die_on:
            raise KeyboardInterrupt("killed")
        return super()._generate(requests)


def test_a_crash_mid_shard_loses_at_most_one_micro_batch(tiny_config, tmp_path):
    stub = ChatStub(lambda n, body, req: ok(body))
    settings = [
        *STUB_JUDGE,
        "judge.micro_batch=5",
        "output.units_per_shard=1000",
    ]
    config = load_config(tiny_config, settings)
    plan = pipeline.plan(config, tmp_path / "out")
    assert plan.num_shards == 1
    run = pipeline.prepare_output(plan)
    dying = _DiesOnCall(config.judge, config.seed, transport=httpx2.MockTransport(stub), die_on=3)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_shard(plan, run, 0, dying)
    assert len(stub.bodies) == 10  # two micro-batches of 5 were answered ...
    assert len(list(plan.state_path("partial", "00000").glob("*.parquet"))) == 2  # ... and saved

    again = OpenAIJudge(config.judge, config.seed, transport=httpx2.MockTransport(stub))
    report = pipeline.run_shard(plan, run, 0, again)
    assert report.units == UNITS and len(stub.bodies) == UNITS  # nothing was asked twice
    assert not plan.state_path("partial", "00000").exists()
    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    assert judgments["error"].null_count() == UNITS
    assert judgments.select("persona_id", "pair_id", "order", "sample").unique().height == UNITS


def test_card_reports_failures_retries_and_cost(tiny_config, tmp_path):
    def reply(n, body, req):
        if n % 4 == 0:
            return ok(body, "not json")
        return ok(body)

    build(
        tiny_config,
        tmp_path,
        ChatStub(reply),
        "judge.max_invalid_retries=1",
        "judge.prices.prompt_per_million=1",
        "judge.prices.completion_per_million=1",
    )
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Re-asked outputs:" in card and "judge_system.j2:" in card and "at the configured prices" in card


def test_shard_threads_share_one_client_and_limit_and_overlap(tiny_config, tmp_path):
    import asyncio
    import threading

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        with lock:
            state["now"] -= 1
        return ok(json.loads(request.content))

    settings = [
        *STUB_JUDGE,
        "population.size=4",
        "judge.micro_batch=2",
        "judge.concurrency=3",
        "judge.max_concurrency=3",
        "output.units_per_shard=12",
    ]
    config = load_config(tiny_config, settings)
    plan = pipeline.plan(config, tmp_path / "out")
    assert plan.num_shards == 4
    run = pipeline.prepare_output(plan)
    judge = OpenAIJudge(config.judge, config.seed, transport=httpx2.MockTransport(handler))
    threads = [threading.Thread(target=pipeline.run_shard, args=(plan, run, i, judge)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    judge.close()
    reports = [pipeline.shard_report(plan, i) for i in range(4)]
    assert all(r is not None and r.units == 12 for r in reports)
    assert state["peak"] == 3  # micro-batches of 2 from different shards overlapped, up to the limit and no further


def test_choice_mode_reads_logprobs_from_a_one_token_answer(tiny_config, tmp_path):
    import math

    def reply(n, body, req):
        assert body["max_tokens"] == 1 and body["logprobs"] is True and "response_format" not in body
        answer = completion(body, "B", finish="length")  # one token asked for, one token given
        answer["choices"][0]["logprobs"] = {
            "content": [
                {
                    "token": "B",
                    "logprob": math.log(0.7),
                    "top_logprobs": [
                        {"token": "B", "logprob": math.log(0.7)},
                        {"token": "A", "logprob": math.log(0.1)},
                    ],
                }
            ]
        }
        return httpx2.Response(200, json=answer)

    _, judgments, _ = build(tiny_config, tmp_path, ChatStub(reply), "judge.mode=choice")
    assert judgments["error"].null_count() == UNITS
    assert judgments["confidence"].to_list() == [pytest.approx(0.875)] * UNITS  # 0.7 / (0.7 + 0.1)
