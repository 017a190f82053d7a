"""The OpenAI judge against a real HTTP server on 127.0.0.1: a token in base_url never reaches Parquet or logs.

``EchoingChatServer`` is a small OpenAI-compatible test server (stdlib ``ThreadingHTTPServer``) that, like some
real servers and proxies, repeats the request's headers in its error bodies. Everything on our side is the real
code: the openai client, its HTTP stack and connection pool, the judge, the pipeline and the Parquet writers.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.judges.openai import OpenAIJudge

pytestmark = pytest.mark.integration

GOOD = {"rationale": "Closer to what I think.", "choice": "A", "strength": 4, "confidence": 80}
URL_TOKEN = "tok-in-url-8c1f4e2a9d"


class EchoingChatServer(ThreadingHTTPServer):
    """/v1/chat/completions: refuses json_schema and prompts about parks, each time echoing the request headers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.authorizations: list[str] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: EchoingChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.server.lock:
            self.server.authorizations.append(self.headers.get("authorization", ""))
        echo = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}; request headers: {echo}"}})
        elif (body.get("response_format") or {}).get("type") == "json_schema":
            self._send(400, {"error": {"message": f"response_format json_schema is not supported ({echo})"}})
        elif "public parks" in body["messages"][1]["content"]:
            self._send(400, {"error": {"message": f"maximum context length exceeded. Request headers: {echo}"}})
        else:
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps(GOOD)}}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
            self._send(200, answer)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        return None


@pytest.fixture
def server() -> Iterator[EchoingChatServer]:
    httpd = EchoingChatServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def test_a_token_in_base_url_never_reaches_parquet_or_logs(
    server: EchoingChatServer, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
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
    run = pipeline.prepare_output(plan)
    judge = OpenAIJudge(config.judge, config.seed, plan.state_path("judge"))
    try:
        reports = [pipeline.run_shard(plan, run, i, judge) for i in range(plan.num_shards)]
    finally:
        judge.close()
    pipeline.finalize(plan, run, reports, judge.info)

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
