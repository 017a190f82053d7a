"""OpenAI-compatible judge: OpenAI, a `vllm serve` fleet, or any provider speaking /v1/chat/completions.

Requests run concurrently under an adaptive limit (AIMD on 429s, pauses from x-ratelimit-* headers), each with
its own timeout and jittered retries that honour Retry-After. Structured output asks for the verdict's JSON
Schema and falls back to json_object, then to plain text with tolerant extraction, for servers that lack it.
Batch API mode sends whole micro-batches as one OpenAI batch and finds a pending batch again after a restart.
The API key comes from the environment variable ``api_key_env`` names and is never stored or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from polypref.dataset.writer import write_json
from polypref.errors import PolyprefError
from polypref.judges.llm import Completion, LLMJudge, LLMJudgeConfig, Request
from polypref.judges.parsing import request_schema
from polypref.judges.ratelimit import AdaptiveLimiter, backoff_delay, retry_after
from polypref.records import content_hash
from polypref.strict import StrictModel

log = logging.getLogger("polypref.judges.openai")
FORMATS = ("json_schema", "json_object", "none")
TERMINAL = {"completed", "failed", "expired", "cancelled"}
FATAL = {  # answers about the setup, not the request: the run stops, saved micro-batches are kept
    401: "Check the key in the variable judge.api_key_env names.",
    403: "The key lacks access to this model or endpoint.",
    404: "Check judge.base_url and judge.model.",
}


class Prices(StrictModel):
    prompt_per_million: float = Field(ge=0, description="USD per 1M prompt tokens")
    completion_per_million: float = Field(ge=0, description="USD per 1M completion tokens")


class OpenAIJudgeConfig(LLMJudgeConfig):
    backend: Literal["openai"] = "openai"
    base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible endpoint, ending in /v1")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (null: the server needs none)"
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight to start with")
    max_concurrency: int = Field(128, ge=1, description="Upper bound the adaptive limit may grow to")
    timeout_s: float | None = Field(120, gt=0, description="Per-request timeout (null: wait as long as it takes)")
    max_retries: int = Field(8, ge=0, le=50, description="Retries per request on 429, 5xx, timeouts, lost connections")
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    response_format: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto",
        description="auto: json_schema, falling back to json_object, then none, when the server refuses",
    )
    logprobs: bool = Field(True, description="Ask for logprobs (choice mode needs them)")
    batch_api: bool = Field(False, description="Use the Batch API (50% cheaper, asynchronous, up to 24 h)")
    batch_poll_s: float = Field(30, gt=0, description="Seconds between batch status checks")
    prices: Prices | None = Field(None, description="Token prices, to report the run's cost")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description='Provider-specific request fields, e.g. {"chat_template_kwargs": {"enable_thinking": false}}',
    )


def chat_body(config: OpenAIJudgeConfig, request: Request, response_format: str) -> dict[str, Any]:
    """The /v1/chat/completions body for one request: used for live calls and Batch API lines alike."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": request.messages,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": request.seed,
        **config.extra_body,
    }
    if config.mode == "choice":
        body["max_tokens"] = 1
        body["logprobs"] = True
        body["top_logprobs"] = 5
        return body
    body["max_tokens"] = config.max_tokens
    if response_format == "json_schema":
        schema = {"name": "verdict", "strict": True, "schema": request_schema(config.allow_ties)}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif response_format == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def batch_lines(config: OpenAIJudgeConfig, requests: Sequence[Request], response_format: str) -> bytes:
    """Batch API input file: one JSON line per request, matched back by custom_id."""
    lines = (
        json.dumps(
            {
                "custom_id": custom_id(r),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(config, r, response_format),
            }
        )
        for r in requests
    )
    return ("\n".join(lines) + "\n").encode()


def custom_id(request: Request) -> str:
    return f"u{request.unit}-a{request.attempt}"


def completion_from(body: dict[str, Any]) -> Completion:
    """A chat.completion object (as dict) -> Completion."""
    choices = body.get("choices") or []
    if not choices:
        return Completion(error="api_error: response without choices")
    choice = choices[0]
    message = choice.get("message") or {}
    usage = body.get("usage") or {}
    logprobs = None
    content = (choice.get("logprobs") or {}).get("content") or []
    if content:
        logprobs = {t["token"].strip(): t["logprob"] for t in content[0].get("top_logprobs") or []}
        logprobs.setdefault(content[0]["token"].strip(), content[0]["logprob"])
    return Completion(
        text=message.get("content"),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        choice_logprobs=logprobs,
        refusal=message.get("refusal"),
    )


class OpenAIJudge(LLMJudge):
    def __init__(
        self,
        config: OpenAIJudgeConfig,
        seed: int,
        workdir: Path | None = None,
        transport: Any = None,  # an httpx2 transport, for fault-injection tests
    ):
        super().__init__(config, seed)
        self.config: OpenAIJudgeConfig = config
        self.workdir = workdir
        self.transport = transport
        self._api_key = api_key(config)
        self._format = "json_schema" if config.response_format == "auto" else config.response_format
        self._rng = random.Random(seed)
        self.limiter = AdaptiveLimiter(config.concurrency, config.max_concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._shared: Any = None
        self.serialize_calls = False  # shard threads may call at once: they share the loop and the limiter
        self.info = self._info("openai", config.model_dump(exclude={"backend", "model", "api_key_env"}))

    # -- client -------------------------------------------------------------------------------------
    def _client(self) -> Any:
        import httpx2
        from openai import AsyncOpenAI

        http = httpx2.AsyncClient(transport=self.transport) if self.transport is not None else None
        return AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self._api_key,
            max_retries=0,  # retries are ours
            timeout=self.config.timeout_s,
            http_client=http,
        )

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Run on the judge's own event loop, so every shard thread shares one client, connection pool and
        concurrency limit, and micro-batches of different shards overlap instead of taking turns."""
        if not requests:
            return []
        run = self._batch if self.config.batch_api else self._live
        return asyncio.run_coroutine_threadsafe(run(requests), self._event_loop()).result()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="polypref-openai", daemon=True)
                self._thread.start()
            return self._loop

    # -- live requests ------------------------------------------------------------------------------
    async def _live(self, requests: Sequence[Request]) -> list[Completion]:
        if self._shared is None:  # made on the loop that will use it
            self._shared = self._client()
        return list(await asyncio.gather(*(self._one(self._shared, r) for r in requests)))

    async def _one(self, client: Any, request: Request) -> Completion:
        import openai

        last = "api_error: no attempt made"
        for attempt in range(self.config.max_retries + 1):
            await self.limiter.acquire()
            fmt = self._format
            throttled = success = False
            hint = None
            try:
                raw = await client.chat.completions.with_raw_response.create(**chat_body(self.config, request, fmt))
                self.limiter.observe_headers(raw.headers)
                success = True
                return completion_from(raw.parse().model_dump())
            except openai.APIStatusError as e:
                status, headers = e.status_code, e.response.headers
                self.limiter.observe_headers(headers)
                hint = retry_after(headers)
                last = f"api_error: HTTP {status}: {_message(e)}"
                if self._downgrade_format(fmt, status, _message(e)):
                    continue
                throttled = status == 429
                if status in FATAL:
                    # every request would fail the same way: stop rather than mark the whole shard invalid
                    # (a finished shard is not judged again, so the rerun after the fix would skip it)
                    raise PolyprefError(
                        f"{self.config.base_url} refused the request: {last}. {FATAL[status]}"
                    ) from None
                if status not in (408, 409, 429) and status < 500:
                    return Completion(error=last)
            except openai.APITimeoutError:
                last = f"timeout: no answer within {self.config.timeout_s} s"
            except openai.APIConnectionError as e:
                last = f"api_error: connection failed: {type(e.__cause__ or e).__name__}"
            finally:
                await self.limiter.release(throttled=throttled, success=success)
            if attempt < self.config.max_retries:
                delay = backoff_delay(attempt, self.config.backoff_base_s, self.config.backoff_max_s, hint, self._rng)
                if throttled and hint:
                    self.limiter.pause(hint)
                await asyncio.sleep(delay)
        return Completion(error=f"{last} (after {self.config.max_retries} retries)")

    def _downgrade_format(self, used: str, status: int, message: str) -> bool:
        """In auto mode, a server that rejects the response_format gets the next simpler one."""
        if self.config.response_format != "auto" or used == "none" or self.config.mode == "choice":
            return False
        rejected = status in (400, 422) or (status == 500 and ("response_format" in message or "json" in message))
        if not rejected:
            return False
        if self._format == used:  # concurrent requests may have downgraded already
            self._format = FORMATS[FORMATS.index(used) + 1]
            log.warning("server rejected response_format %s (%s); using %s", used, message[:120], self._format)
        return True

    # -- Batch API ----------------------------------------------------------------------------------
    async def _batch(self, requests: Sequence[Request]) -> list[Completion]:
        if self.workdir is None:
            raise PolyprefError("judge.batch_api needs a work folder to remember pending batches")
        key = content_hash(self.config.model, *(custom_id(r) + str(r.seed) for r in requests), size=12)
        state_file = self.workdir / "batches" / f"{key}.json"
        async with self._client() as client:
            if state_file.exists():
                batch_id = json.loads(state_file.read_text())["batch_id"]
                log.info("found pending batch %s for micro-batch %s", batch_id, key)
            else:
                upload = await client.files.create(
                    file=(f"polypref-{key}.jsonl", batch_lines(self.config, requests, self._format)),
                    purpose="batch",
                )
                batch = await client.batches.create(
                    input_file_id=upload.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    metadata={"polypref": key},
                )
                batch_id = batch.id
                write_json({"batch_id": batch_id, "input_file_id": upload.id}, state_file)  # before any wait
            batch = await client.batches.retrieve(batch_id)
            while batch.status not in TERMINAL:
                await asyncio.sleep(self.config.batch_poll_s)
                batch = await client.batches.retrieve(batch_id)
            results: dict[str, Completion] = {}
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await client.files.content(file_id)
                    results.update(_batch_results(content.text))
        completions = [
            results.get(custom_id(r))
            or Completion(error=f"api_error: batch {batch_id} {batch.status} without a result")
            for r in requests
        ]
        state_file.unlink(missing_ok=True)
        return completions

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._shared is not None:
            asyncio.run_coroutine_threadsafe(self._shared.close(), loop).result(timeout=30)
            self._shared = None
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=30)
        loop.close()


def _batch_results(text: str) -> dict[str, Completion]:
    results = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        response = row.get("response") or {}
        if row.get("error") or response.get("status_code", 200) >= 400:
            detail = row.get("error") or (response.get("body") or {}).get("error")
            results[row["custom_id"]] = Completion(error=f"api_error: batch request failed: {json.dumps(detail)[:300]}")
        else:
            results[row["custom_id"]] = completion_from(response.get("body") or {})
    return results


def _message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(error, "message", error))[:300]


def api_key(config: OpenAIJudgeConfig) -> str:
    """The key from the environment; servers without auth (api_key_env: null) get a placeholder."""
    if config.api_key_env is None:
        return "EMPTY"
    value = os.environ.get(config.api_key_env)
    if not value:
        raise PolyprefError(
            f"judge.api_key_env: environment variable {config.api_key_env} is not set "
            "(set it, or set judge.api_key_env: null for a server without authentication)"
        )
    return value
