"""The OpenAI-compatible judge under fault injection.

The only stub here is ``ChatStub``, an httpx2 MockTransport handler speaking /v1/chat/completions (and the
Batch API), which exists to inject failures a real server will not produce on demand. Everything between it and
the Parquet files is the real code: client, retries, limiter, parsing, pipeline, filters and writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.errors import JudgeFatalError, PolyprefError
from polypref.judges import collect_verdicts
from polypref.judges.base import NO_ANSWER, error_category
from polypref.judges.llm import LLMJudge, Request
from polypref.llms.openai_wire import batch_lines, chat_body, format_rejected
from tests.conftest import run_without_prefect

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


FAST_RETRIES = [
    "judge.max_retries=4",
    "judge.backoff_base_s=0.01",
    "judge.backoff_max_s=0.05",
    "judge.micro_batch=8",
    "judge.concurrency=4",
]


def build(tiny_config: Path, tmp_path: Path, handler, *overrides: str) -> tuple[dict, pl.DataFrame, LLMJudge]:
    config = load_config(tiny_config, [*STUB_JUDGE, *FAST_RETRIES, *overrides])
    out = tmp_path / "out"
    plan = pipeline.plan(config, out)
    judge = LLMJudge(config.judge, config.seed, plan.state.judge_dir, transport=httpx2.MockTransport(handler))
    # the personas' requests only: the persona-free run's are counted in test_pipeline
    summary = run_without_prefect(plan, judge, persona_free=False)
    return summary, pl.read_parquet(out / "data" / "judgments"), judge


def judge_all(tiny_config: Path, tmp_path: Path, handler, *overrides: str) -> tuple[pl.DataFrame, LLMJudge]:
    """Every unit of the build through the real judge, without the pipeline's bookkeeping: for outcomes the
    pipeline treats specially (no_answer units are not saved as done), the judge's own verdicts are the contract."""
    config = load_config(tiny_config, [*STUB_JUDGE, *FAST_RETRIES, *overrides])
    plan = pipeline.plan(config, tmp_path / "out")
    judge = LLMJudge(config.judge, config.seed, tmp_path / "judge-state", transport=httpx2.MockTransport(handler))
    try:
        frames = [collect_verdicts(judge, plan.batch(i)) for i in range(plan.num_shards)]
    finally:
        judge.close()
    return pl.concat(frames), judge


def categories(verdicts: pl.DataFrame) -> list[str | None]:
    return [error_category(e) for e in verdicts["error"]]


def unit_key(body: dict) -> str:
    """What identifies a unit across retries: its messages (the seed changes when an invalid output is re-asked)."""
    return json.dumps(body["messages"])


class AsyncChatStub:
    """Like ChatStub, for answers that take time: ``reply(call_number, body)`` is awaited on the judge's loop."""

    def __init__(self, reply: Callable[[int, dict], Awaitable[httpx2.Response]]):
        self.reply = reply
        self.bodies: list[dict] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        return await self.reply(len(self.bodies), body)


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
    assert body["response_format"]["json_schema"]["schema"]["properties"]["choice"]["enum"] == [
        "A",
        "B",
        "tie",
    ]  # allow_ties
    assert [m["role"] for m in body["messages"]] == ["system", "user"] and isinstance(body["seed"], int)
    assert summary["tokens"] == {"prompt_tokens": 100 * UNITS, "completion_tokens": 20 * UNITS}
    assert summary["cost_usd"] == pytest.approx(UNITS * (100 * 2.0 + 20 * 8.0) / 1e6)
    assert judgments["prompt_template"][0].startswith("judge_system.j2:")
    assert (judgments["judge_backend"] == "openai").all() and not judgments["simulated"].any()
    assert judgments["response_format"].to_list() == ["json_schema"] * UNITS


def test_provider_fields_reach_the_server_as_they_are(tiny_config, tmp_path):
    """extra_body holds fields the OpenAI client does not know (vLLM's chat_template_kwargs, top_k): each
    request carries them unchanged, and the build completes."""
    stub = ChatStub(lambda n, body, req: ok(body))
    extra = "judge.extra_body={chat_template_kwargs: {enable_thinking: false}, top_k: 5, temperature: 0.0}"
    _, judgments, _ = build(tiny_config, tmp_path, stub, extra)
    assert judgments["error"].null_count() == UNITS == len(stub.bodies)
    for body in stub.bodies:
        assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["top_k"] == 5


def test_429_storm_with_retry_after_is_waited_out(tiny_config, tmp_path):
    def reply(n, body, req):
        if n <= 30:
            return httpx2.Response(429, headers={"retry-after": "0.02"}, json={"error": {"message": "rate limited"}})
        return ok(body)

    summary, judgments, judge = build(tiny_config, tmp_path, ChatStub(reply), "judge.max_retries=12")
    assert judgments["error"].null_count() == UNITS
    assert judge.llm.limiter.throttled == 30
    assert judge.llm.limiter.lowest_limit < 4  # it backed off ...
    assert judge.llm.limiter.limit > judge.llm.limiter.lowest_limit  # ... and grew back on success
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


def _timeout(n: int, body: dict, req: httpx2.Request) -> httpx2.Response:
    raise httpx2.ReadTimeout("no answer", request=req)


def _refused_connection(n: int, body: dict, req: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=req)


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (_timeout, "timeout: no answer within"),
        (_refused_connection, "connection failed"),
        (lambda n, body, req: httpx2.Response(503, json={"error": {"message": "overloaded"}}), "HTTP 503: overloaded"),
        (lambda n, body, req: httpx2.Response(429, json={"error": {"message": "slow down"}}), "HTTP 429: slow down"),
    ],
    ids=["timeout", "connection", "503", "429"],
)
def test_transport_failures_after_every_retry_are_no_answer(tiny_config, tmp_path, reply, detail):
    stub = ChatStub(reply)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub, "judge.max_retries=2")
    assert len(stub.bodies) == 3 * UNITS  # first try + 2 retries each, and no invalid-output re-asks on top
    assert categories(verdicts) == [NO_ANSWER] * UNITS  # never got an answer: not done, asked again on a rerun
    assert verdicts["error"].str.contains(detail, literal=True).all()
    assert verdicts["error"].str.contains("after 2 retries", literal=True).all()
    assert (verdicts["attempts"] == 3).all() and verdicts["raw"].null_count() == UNITS  # every request counts


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
    summary, judgments, _ = build(tiny_config, tmp_path, stub, "judge.response_format=json_schema")
    assert len(stub.bodies) == UNITS
    assert judgments["error"].str.starts_with("request_rejected: HTTP 413: prompt too large").all()
    assert summary["errors"] == {"request_rejected": UNITS}  # an answer about the request: done and counted


@pytest.mark.parametrize(("status", "advice"), [(401, "judge.api_key_env"), (403, "access"), (404, "judge.model")])
def test_setup_errors_stop_the_run_and_leave_the_shard_to_redo(tiny_config, tmp_path, monkeypatch, status, advice):
    secret = "sk-fatal-0a1b2c3d4e5f"
    monkeypatch.setenv("POLYPREF_FATAL_KEY", secret)

    def reply(n, body, req):
        return httpx2.Response(status, json={"error": {"message": f"nope ({req.headers['authorization']})"}})

    stub = ChatStub(reply)
    with pytest.raises(JudgeFatalError, match=advice) as raised:
        build(tiny_config, tmp_path, stub, "judge.api_key_env=POLYPREF_FATAL_KEY")
    assert f"http://stub.invalid/v1 answered HTTP {status}: nope (Bearer ***)" in str(raised.value)
    assert secret not in "".join(traceback.format_exception(raised.value))  # no chained error quoting the key
    assert len(stub.bodies) <= 4  # judge.concurrency: nothing is sent after the first setup error
    plan = pipeline.plan(load_config(tiny_config, [*STUB_JUDGE, *FAST_RETRIES]), tmp_path / "out")
    assert all(pipeline.shard_report(plan, i) is None for i in range(plan.num_shards))


def test_servers_without_json_schema_fall_back(tiny_config, tmp_path):
    def reply(n, body, req):
        kind = (body.get("response_format") or {}).get("type")
        if kind == "json_schema":
            return httpx2.Response(400, json={"error": {"message": "response_format json_schema unsupported"}})
        if kind == "json_object":
            return httpx2.Response(500, json={"error": {"message": "json_object is not supported either"}})
        return ok(body, "Here you go: " + json.dumps(GOOD))  # plain text, extracted tolerantly

    stub = ChatStub(reply)
    _, judgments, _ = build(tiny_config, tmp_path, stub)
    assert judgments["error"].null_count() == UNITS
    assert "response_format" not in stub.bodies[-1]
    assert judgments["response_format"].to_list() == ["none"] * UNITS  # what each answer was asked under


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
    """The OpenAI Batch API (files + batches), which no local server implements. A stub by necessity.

    Batches end as ``status``; ``result(input_line)`` writes each request's result line (None: no line at all).
    """

    def __init__(
        self,
        fail_first_poll: bool = False,
        status: str = "completed",
        result: Callable[[dict], dict | None] | None = None,
    ):
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.created = 0
        self.fail_first_poll = fail_first_poll
        self.status = status
        self.result = result or answered

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
            return httpx2.Response(200, json=self._batch(batch_id, self.status, *self._finish(batch_id)))
        if request.method == "GET" and path.startswith("/files/") and path.endswith("/content"):
            return httpx2.Response(200, content=self.files[path.split("/")[2]])
        return httpx2.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})

    def _finish(self, batch_id: str) -> tuple[str | None, str | None]:
        """Output and error files, as OpenAI splits them: lines with an ``error`` go to the error file."""
        inputs = [json.loads(line) for line in self.files[self.batches[batch_id]["input"]].decode().splitlines()]
        lines = [line for line in map(self.result, inputs) if line is not None][::-1]  # matched by custom_id
        ids = []
        for kind, chosen in (("out", [x for x in lines if not x["error"]]), ("err", [x for x in lines if x["error"]])):
            file_id = f"file-{kind}-{batch_id}" if chosen else None
            if file_id:
                self.files[file_id] = "".join(json.dumps(x) + "\n" for x in chosen).encode()
            ids.append(file_id)
        return ids[0], ids[1]

    @staticmethod
    def _batch(batch_id: str, status: str, output: str | None = None, errors: str | None = None) -> dict:
        return {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "f",
            "completion_window": "24h",
            "status": status,
            "created_at": 0,
            "output_file_id": output,
            "error_file_id": errors,
        }


def answered(row: dict, response: dict | None = None) -> dict:
    """A batch result line: ``response`` (status_code and body), by default a good verdict."""
    response = response or {"status_code": 200, "body": completion(row["body"], json.dumps(GOOD))}
    return {"id": "r", "custom_id": row["custom_id"], "response": response, "error": None}


def not_run(row: dict, code: str) -> dict:
    """An error-file line for a request the batch never ran (it expired or was cancelled first)."""
    error = {"code": code, "message": "This request could not be executed before the batch ended."}
    return {"id": "r", "custom_id": row["custom_id"], "response": None, "error": error}


def unit_of(row: dict) -> int:
    return int(row["custom_id"][1:].split("-")[0])  # custom ids are u<unit>-a<attempt>


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


def test_a_damaged_pending_batch_record_is_named_and_nothing_is_paid_for_twice(tiny_config, tmp_path):
    stub = BatchStub(fail_first_poll=True)
    args = ("judge.batch_api=true", "judge.batch_poll_s=0.01", "judge.micro_batch=100")
    with pytest.raises(Exception, match=r"went down|Connection"):
        build(tiny_config, tmp_path, stub, *args)
    (pending,) = (tmp_path / "out" / ".polypref" / "judge" / "batches").glob("*.json")
    assert set(json.loads(pending.read_text())) == {"batch_id", "input_file_id", "response_format"}
    pending.write_text('{"batch_id": ')  # cut short: the id it held is lost
    with pytest.raises(PolyprefError, match=rf"{pending}: not a pending batch's record .*delete the file"):
        build(tiny_config, tmp_path, stub, *args)
    assert stub.created == 1  # not submitted again behind the user's back


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


class _DiesOnCall(LLMJudge):
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
    assert plan.state.stored_judgments() == 10  # ... and saved

    again = LLMJudge(config.judge, config.seed, transport=httpx2.MockTransport(stub))
    report = pipeline.run_shard(plan, run, 0, again)
    assert report.units == UNITS and len(stub.bodies) == UNITS  # nothing was asked twice
    assert plan.state.stored_judgments() == UNITS  # each answer stored once
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
    state = {"now": 0, "peak": 0}
    full = asyncio.Event()  # every request runs on the judge's one loop, so an asyncio event is shared

    async def handler(request: httpx2.Request) -> httpx2.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        if state["now"] >= 3:
            full.set()
        # hold requests until the limit is reached once, so overlap does not depend on how fast threads start;
        # without overlap, the first wait gives up after 2 s and the peak assertion below fails
        try:
            await asyncio.wait_for(full.wait(), timeout=2.0)
        except TimeoutError:
            full.set()
        await asyncio.sleep(0.005)
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
    judge = LLMJudge(config.judge, config.seed, transport=httpx2.MockTransport(handler))
    threads = [threading.Thread(target=pipeline.run_shard, args=(plan, run, i, judge)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    judge.close()
    reports = [pipeline.shard_report(plan, i) for i in range(4)]
    assert all(r is not None and r.units == 12 for r in reports)
    # a micro-batch holds 2 requests, so a third one in flight can only come from another shard: shards overlap,
    # and the shared limit of 3 is never exceeded
    assert state["peak"] == 3


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
    assert judgments["response_format"].to_list() == ["none"] * UNITS  # no constraint: one token, read by logprobs
    assert judgments["confidence"].to_list() == [pytest.approx(0.875)] * UNITS  # 0.7 / (0.7 + 0.1)


# -- answers that are not answers: bad 200 bodies ----------------------------------------------------------

BAD_BODIES = {
    "cut_off_json": lambda body: httpx2.Response(
        200, content=json.dumps(completion(body, json.dumps(GOOD)))[:60].encode(), headers=JSON
    ),
    "html_from_a_proxy": lambda body: httpx2.Response(
        200, content=b"<html><body>502 Bad Gateway</body></html>", headers={"content-type": "text/html"}
    ),
    "json_list": lambda body: httpx2.Response(200, json=[completion(body, json.dumps(GOOD))]),
    "error_object": lambda body: httpx2.Response(200, json={"error": {"message": "upstream provider failed"}}),
}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("kind", list(BAD_BODIES))
def test_a_bad_200_body_is_one_failed_request_retried_like_a_5xx(tiny_config, tmp_path, kind):
    seen: dict[str, int] = {}

    def reply(n, body, req):
        key = unit_key(body)
        seen[key] = seen.get(key, 0) + 1
        return BAD_BODIES[kind](body) if seen[key] == 1 else ok(body)

    stub = ChatStub(reply)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub)
    assert verdicts["error"].null_count() == UNITS  # the micro-batch survived, and every unit got its answer
    assert len(stub.bodies) == 2 * UNITS and set(seen.values()) == {2}
    assert (verdicts["attempts"] == 2).all()  # the failed request and its retry


@pytest.mark.parametrize("kind", list(BAD_BODIES))
def test_bad_200_bodies_after_every_retry_are_no_answer(tiny_config, tmp_path, kind):
    stub = ChatStub(lambda n, body, req: BAD_BODIES[kind](body))
    verdicts, _ = judge_all(tiny_config, tmp_path, stub, "judge.max_retries=2")
    assert len(stub.bodies) == 3 * UNITS
    assert categories(verdicts) == [NO_ANSWER] * UNITS
    assert verdicts["error"].str.contains("bad response", literal=True).all()


def test_a_200_without_choices_is_retried_then_no_answer(tiny_config, tmp_path):
    def empty(body: dict) -> httpx2.Response:
        answer = completion(body, None)
        answer["choices"] = []
        return httpx2.Response(200, json=answer)

    seen: dict[str, int] = {}

    def once(n, body, req):
        key = unit_key(body)
        seen[key] = seen.get(key, 0) + 1
        return empty(body) if seen[key] == 1 else ok(body)

    stub = ChatStub(once)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub)
    assert verdicts["error"].null_count() == UNITS and len(stub.bodies) == 2 * UNITS

    always = ChatStub(lambda n, body, req: empty(body))
    verdicts, _ = judge_all(tiny_config, tmp_path / "again", always, "judge.max_retries=3")
    assert len(always.bodies) == 4 * UNITS
    assert categories(verdicts) == [NO_ANSWER] * UNITS
    assert verdicts["error"].str.contains("response without choices", literal=True).all()


def test_a_request_the_server_refuses_is_an_invalid_answer_not_no_answer(tiny_config, tmp_path):
    too_long = {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000"}}
    stub = ChatStub(lambda n, body, req: httpx2.Response(400, json=too_long))
    verdicts, _ = judge_all(tiny_config, tmp_path, stub)
    assert len(stub.bodies) == UNITS  # the same request would be refused again: not retried
    assert categories(verdicts) == ["request_rejected"] * UNITS
    assert verdicts["error"].str.contains("HTTP 400: This model's maximum context length", literal=True).all()


# -- setup errors stop everything at once ------------------------------------------------------------------


def test_a_setup_error_cancels_requests_in_flight_and_fails_every_later_call(tiny_config, tmp_path):
    concurrency = 4
    settings = [
        *STUB_JUDGE,
        "population.size=10",  # 120 units
        "output.units_per_shard=24",  # 5 shards, judged by 5 threads sharing the judge
        "judge.micro_batch=24",
        f"judge.concurrency={concurrency}",
        "judge.base_url=http://someone:pw-in-url-123@stub.invalid/v1",
    ]
    config = load_config(tiny_config, settings)
    plan = pipeline.plan(config, tmp_path / "out")
    assert plan.num_units == 120 and plan.num_shards == 5
    state = {"in_flight": 0, "cancelled": 0}
    all_in = asyncio.Event()

    async def reply(n: int, body: dict) -> httpx2.Response:
        state["in_flight"] += 1
        if state["in_flight"] == concurrency:
            all_in.set()
        try:
            if n == 1:  # answer once every slot is taken, so there are requests in flight to cancel
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_in.wait(), timeout=5)
                return httpx2.Response(401, json={"error": {"message": "Incorrect API key provided"}})
            await asyncio.sleep(30)  # only cancellation ends these early
            return httpx2.Response(401, json={"error": {"message": "Incorrect API key provided"}})
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        finally:
            state["in_flight"] -= 1

    stub = AsyncChatStub(reply)
    judge = LLMJudge(config.judge, config.seed, transport=httpx2.MockTransport(stub))
    errors: list[BaseException | None] = [None] * plan.num_shards

    def shard(i: int) -> None:
        try:
            collect_verdicts(judge, plan.batch(i))
        except BaseException as e:
            errors[i] = e

    started = time.monotonic()
    threads = [threading.Thread(target=shard, args=(i,)) for i in range(plan.num_shards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads) and time.monotonic() - started < 20

    # The limiter admits judge.concurrency (4) requests at once and nothing is sent after the first 401, so the
    # server sees at most 4 of the 120 planned requests; the ones still in flight were cancelled, not awaited.
    assert len(stub.bodies) <= concurrency
    assert state["cancelled"] == len(stub.bodies) - 1
    assert all(isinstance(e, JudgeFatalError) for e in errors), errors
    message = str(errors[0])
    assert "http://***@stub.invalid/v1 answered HTTP 401" in message and "judge.api_key_env" in message
    assert "pw-in-url-123" not in message

    sent = len(stub.bodies)
    with pytest.raises(JudgeFatalError, match="HTTP 401"):
        next(judge.judge(plan.batch(0)))  # a later call, from any thread, fails at once ...
    assert len(stub.bodies) == sent  # ... without sending anything
    judge.close()


# -- structured output: fall back only when the server says the format is unsupported ----------------------


@pytest.mark.parametrize(
    ("status", "message", "param", "rejected"),
    [
        (400, "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens", None, False),
        (400, "Invalid 'messages[1].content': string too long.", "messages", False),
        (500, "CUDA out of memory while decoding json output", None, False),
        (503, "response_format json_schema is not supported", None, False),  # overloaded, whatever it says
        (
            400,
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
            None,
            True,
        ),
        (400, "Unsupported value", "response_format", True),  # OpenAI names the parameter
        (500, 'response_format type must be one of "text" or "json_object", but got: json_schema', None, True),
        (422, "[{'loc': ['body', 'response_format', 'type'], 'msg': \"Input should be 'text'\"}]", None, True),
        (400, "The provided JSON schema contains features not supported by xgrammar.", None, True),
    ],
)
def test_format_rejections_are_told_apart_from_other_errors(status, message, param, rejected):
    assert format_rejected(status, message, param) is rejected


def test_a_context_length_400_keeps_structured_output_for_the_other_requests(tiny_config, tmp_path):
    def reply(n, body, req):
        if "public parks" in body["messages"][1]["content"]:  # every t1 prompt is "too long"
            too_long = "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens."
            return httpx2.Response(400, json={"error": {"message": too_long, "type": "invalid_request_error"}})
        return ok(body)

    stub = ChatStub(reply)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub, "judge.micro_batch=4")
    rejected = verdicts.filter(pl.col("error").is_not_null())
    assert 0 < rejected.height < UNITS
    assert (rejected["error"].str.starts_with("request_rejected: HTTP 400: This model's maximum context")).all()
    assert verdicts["error"].null_count() == UNITS - rejected.height
    assert [b["response_format"]["type"] for b in stub.bodies] == ["json_schema"] * len(stub.bodies)
    assert verdicts["response_format"].to_list() == ["json_schema"] * UNITS


def test_an_unsupported_response_format_falls_back_and_rows_say_which_format_was_used(tiny_config, tmp_path):
    def reply(n, body, req):
        if body["response_format"]["type"] == "json_schema":
            message = "response_format json_schema is not supported by this server"
            return httpx2.Response(400, json={"error": {"message": message}})
        return ok(body)

    stub = ChatStub(reply)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub, "judge.max_retries=0")
    assert verdicts["error"].null_count() == UNITS  # the fallback is not a retry: it works with max_retries 0
    assert verdicts["response_format"].to_list() == ["json_object"] * UNITS
    assert stub.bodies[-1]["response_format"] == {"type": "json_object"}


# -- secrets ---------------------------------------------------------------------------------------------


def test_a_server_echoing_the_key_leaks_it_nowhere(tiny_config, tmp_path, monkeypatch, caplog):
    secret = "sk-echo-5f1e2d3c4b5a69788796a5b4"
    monkeypatch.setenv("POLYPREF_ECHO_KEY", secret)
    caplog.set_level(logging.DEBUG)

    def echo(req: httpx2.Request) -> str:
        return f"headers were: Authorization: {req.headers['authorization']}; key {secret}"

    def reply(n, body, req):
        if body.get("response_format", {}).get("type") == "json_schema":  # a format refusal: logged as a warning
            return httpx2.Response(400, json={"error": {"message": "response_format unsupported; " + echo(req)}})
        if "public parks" in body["messages"][1]["content"]:  # refused requests: stored in `error`
            return httpx2.Response(400, json={"error": {"message": "context too long; " + echo(req)}})
        return ok(body)

    stub = ChatStub(reply)
    _, judgments, _ = build(tiny_config, tmp_path, stub, "judge.api_key_env=POLYPREF_ECHO_KEY")
    assert stub.headers[0]["authorization"] == f"Bearer {secret}"  # it was sent, and echoed back
    _assert_nowhere(secret, tmp_path / "out", judgments, caplog.text)
    rejected = judgments.filter(pl.col("error").is_not_null())
    assert rejected.height > 0
    assert rejected["error"].str.starts_with("request_rejected: HTTP 400: context too long").all()  # still useful
    assert rejected["error"].str.contains("Authorization: Bearer ***", literal=True).all()
    assert "server rejected response_format json_schema" in caplog.text

    # the same echo through every retry of a 500, ending as no_answer
    def always_500(n, body, req):
        return httpx2.Response(500, json={"error": {"message": "internal error; " + echo(req)}})

    verdicts, _ = judge_all(
        tiny_config, tmp_path / "b", ChatStub(always_500), "judge.api_key_env=POLYPREF_ECHO_KEY", "judge.max_retries=1"
    )
    _assert_nowhere(secret, tmp_path / "b", verdicts, caplog.text)
    assert categories(verdicts) == [NO_ANSWER] * UNITS
    assert verdicts["error"].str.contains("HTTP 500: internal error", literal=True).all()


def _assert_nowhere(secret: str, folder: Path, frame: pl.DataFrame, logs: str) -> None:
    for column in ("error", "raw"):
        assert not frame[column].drop_nulls().str.contains(secret, literal=True).any(), column
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in logs


# -- Batch API: what a batch that did not finish leaves behind ---------------------------------------------


BATCH = ("judge.batch_api=true", "judge.batch_poll_s=0.01", "judge.micro_batch=100")


@pytest.mark.parametrize("status", ["expired", "cancelled", "failed"])
def test_a_batch_that_did_not_complete_leaves_its_unanswered_units_no_answer(tiny_config, tmp_path, status):
    def result(row: dict) -> dict | None:
        if status == "failed":  # a batch that failed validation has no result files at all
            return None
        return answered(row) if unit_of(row) % 2 == 0 else not_run(row, f"batch_{status}")

    stub = BatchStub(status=status, result=result)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub, *BATCH)
    unanswered = verdicts.filter(pl.col("error").is_not_null())
    assert unanswered.height == (UNITS if status == "failed" else UNITS // 2)
    assert verdicts["error"].null_count() == UNITS - unanswered.height  # an expired batch's finished work is kept
    assert categories(unanswered) == [NO_ANSWER] * unanswered.height
    assert stub.created == 1
    assert not list((tmp_path / "judge-state" / "batches").glob("*.json"))  # nothing pending to resume


def test_batch_request_errors_are_sorted_by_what_they_mean(tiny_config, tmp_path):
    def result(row: dict) -> dict | None:
        kind = unit_of(row) % 5
        if kind == 4:
            return None  # no line for this request
        too_long = {"status_code": 400, "body": {"error": {"message": "maximum context length is 4096 tokens"}}}
        server = {"status_code": 500, "body": {"error": {"message": "The server had an error"}}}
        no_choices = {"status_code": 200, "body": {**completion(row["body"], None), "choices": []}}
        return answered(row, [None, too_long, server, no_choices][kind])

    verdicts, _ = judge_all(tiny_config, tmp_path, BatchStub(result=result), *BATCH)
    by_kind = [set(categories(verdicts.filter(pl.col("unit") % 5 == k))) for k in range(5)]
    assert by_kind[0] == {None}
    assert by_kind[1] == {"request_rejected"}  # refused for what it is: done, counted
    assert by_kind[2] == by_kind[3] == by_kind[4] == {NO_ANSWER}  # the server failed it or lost it: ask again
    assert verdicts["response_format"].to_list() == ["json_schema"] * UNITS


def test_a_batch_refusing_the_response_format_is_sent_again_in_a_simpler_one(tiny_config, tmp_path):
    def result(row: dict) -> dict:
        if row["body"]["response_format"]["type"] == "json_schema":
            refusal = {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported"}
            return answered(row, {"status_code": 400, "body": {"error": refusal}})
        return answered(row)

    stub = BatchStub(result=result)
    verdicts, _ = judge_all(tiny_config, tmp_path, stub, *BATCH)
    assert verdicts["error"].null_count() == UNITS
    assert verdicts["response_format"].to_list() == ["json_object"] * UNITS
    assert stub.created == 2


def test_a_batch_setup_error_is_fatal(tiny_config, tmp_path, monkeypatch):
    secret = "sk-batch-9f8e7d6c5b4a"
    monkeypatch.setenv("POLYPREF_BATCH_KEY", secret)
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.url.path)
        message = f"bad key {request.headers['authorization']}"
        return httpx2.Response(401, json={"error": {"message": message}})

    with pytest.raises(JudgeFatalError, match=r"HTTP 401: bad key Bearer \*\*\*") as raised:
        judge_all(tiny_config, tmp_path, handler, *BATCH, "judge.api_key_env=POLYPREF_BATCH_KEY")
    assert calls == ["/v1/files"]
    assert secret not in "".join(traceback.format_exception(raised.value))  # no chained error quoting the key


def test_a_setup_error_inside_batch_results_is_fatal_and_leaves_nothing_pending(tiny_config, tmp_path):
    def result(row: dict) -> dict:
        missing = {"message": "The model `stub-model` does not exist", "code": "model_not_found"}
        return answered(row, {"status_code": 404, "body": {"error": missing}})

    with pytest.raises(JudgeFatalError, match="HTTP 404: The model `stub-model` does not exist"):
        judge_all(tiny_config, tmp_path, BatchStub(result=result), *BATCH)
    assert not list((tmp_path / "judge-state" / "batches").glob("*.json"))  # a rerun submits a new batch
