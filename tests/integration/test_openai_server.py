"""The OpenAI judge against a real HTTP server on 127.0.0.1: a token in base_url never reaches Parquet or logs.

``ChatAPIServer`` (tests/openai_api.py) is a stand-in OpenAI-compatible API server that, like some
real servers and proxies, repeats the request's headers in its error bodies. Everything on our side is the real
code: the openai client, its HTTP stack and connection pool, the judge, the pipeline and the Parquet writers.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.judges.llm import LLMJudge
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, serve

pytestmark = pytest.mark.integration

URL_TOKEN = "tok-in-url-8c1f4e2a9d"


@pytest.fixture
def server() -> Iterator[ChatAPIServer]:
    # refuses json_schema and prompts about parks, each time repeating the request headers
    yield from serve(ChatAPIServer(refuse_json_schema=True, too_long_text="public parks", echo_headers=True))


def test_a_token_in_base_url_never_reaches_parquet_or_logs(
    server: ChatAPIServer, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    caplog.set_level(logging.DEBUG)
    settings = [
        "population.size=2",
        "judge.backend=openai",
        "judge.model=served-model",
        f"judge.base_url=http://judge:{URL_TOKEN}@127.0.0.1:{server.port}/v1",
        "judge.api_key_env=null",
        "judge.micro_batch=8",
        "judge.concurrency=4",
        "judge.backoff_base_s=0.01",
    ]
    config = load_config(tiny_config, settings)
    out = tmp_path / "out"
    plan = pipeline.plan(config, out)
    judge = LLMJudge(config.judge, config.seed, plan.state.judge_dir)
    try:
        run_without_prefect(plan, judge)
    finally:
        judge.close()

    # the token really travelled (as HTTP Basic auth, which the URL's credentials become) and came back in echoes
    basic = base64.b64encode(f"judge:{URL_TOKEN}".encode()).decode()
    assert server.authorizations and all(a == f"Basic {basic}" for a in server.authorizations)

    judgments = pl.read_parquet(out / "data" / "judgments")
    for secret in (URL_TOKEN, basic):
        for path in (out / "data" / "judgments").rglob("*.parquet"):
            assert secret.encode() not in path.read_bytes(), (secret, path)
        assert not judgments["error"].drop_nulls().str.contains(secret, literal=True).any()
        assert secret not in caplog.text, secret
        for record in caplog.records:
            assert secret not in record.getMessage()
    refused = judgments.filter(pl.col("error").is_not_null())
    assert refused.height > 0 and judgments["error"].null_count() > 0  # parks refused, the rest answered
    assert refused["error"].str.starts_with("request_rejected: HTTP 400: maximum context length exceeded").all()
    assert judgments.filter(pl.col("error").is_null())["response_format"].unique().to_list() == ["json_object"]
    assert "server rejected response_format json_schema" in caplog.text  # the warning was logged, scrubbed
    assert f"http://***@127.0.0.1:{server.port}/v1" == judge.info.params["base_url"]


def test_connections_stay_open_at_the_most_requests_in_flight(tiny_config: Path, tmp_path: Path) -> None:
    """At max_concurrency (128) requests in flight, every connection is kept for the next request: openai's default
    pool keeps only 100 idle, so each answer past those closed a connection and the next request opened one."""
    for server in serve(ChatAPIServer(delay=0.05)):
        settings = [
            *judge_settings(server),
            "population.size=60",
            "output.units_per_shard=100000",
            "judge.micro_batch=512",
            "judge.concurrency=128",
            "judge.max_concurrency=128",
        ]
        config = load_config(tiny_config, settings)
        plan = pipeline.plan(config, tmp_path / "out")
        judge = LLMJudge(config.judge, config.seed, plan.state.judge_dir)
        try:
            run_without_prefect(plan, judge)
        finally:
            judge.close()
        assert server.requests >= 3 * 128  # many rounds of a full window
        assert server.connections <= 128, (server.connections, server.requests)
