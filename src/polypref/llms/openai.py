"""OpenAI-compatible transport: OpenAI, a `vllm serve` fleet, or any provider speaking /v1/chat/completions.

Requests run concurrently under an adaptive limit (AIMD on 429s, pauses from x-ratelimit-* headers), each with
its own timeout and jittered retries that honour Retry-After. Structured output asks for the verdict's JSON
Schema and falls back to json_object, then to plain text with tolerant extraction, for servers that lack it.
Batch API mode sends whole micro-batches as one OpenAI batch and finds a pending batch again after a restart.
The API key comes from the environment variable ``api_key_env`` names and is never stored or logged.

What a request can end as, and why:

- an answer (parsed, and possibly invalid, by its caller: the LLM judge, generation, a question's options);
- ``no_answer: ...`` when the server never answered usably: timeouts, lost connections, 408/409/429/5xx and
  200s whose body is not a chat completion (cut-off JSON, no choices), after ``max_retries``; a Batch API
  batch that failed, expired or was cancelled; a batch request without a result. Such units are not done:
  the pipeline asks for them again on a rerun;
- ``request_rejected: ...`` when the server refused this request for what it is (a 4xx that is neither about
  the setup nor the response format, e.g. a prompt over the context length). Asking again gets the same
  refusal, so it is an invalid judgment, done and counted. Inside a Batch API result the same rules apply per
  request: 408/409/429/5xx and the batch's own expiry or cancellation codes are ``no_answer``, other 4xx are
  ``request_rejected``;
- ``JudgeFatalError`` on 401/403/404 (also inside a batch result): the setup is wrong, every request would fail,
  so requests in flight are cancelled and every later call fails at once without sending anything.

Before its first request the transport probes every endpoint at once (``llms.probe``): one it cannot reach stops it
with ``EndpointUnreachable``, a refused key or unknown model with ``JudgeFatalError``, within seconds instead of
after every request's retries. A stop request (Ctrl-C, SIGTERM, a head start called off) ends a call promptly:
requests already sent are waited for, nothing new is sent, and retries do not wait out their backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

from polypref.errors import EndpointUnreachable, JudgeFatalError, PolyprefError
from polypref.interrupt import stop_requested
from polypref.llms import probe
from polypref.llms.base import Completion, Request
from polypref.llms.openai_batch import BatchAPI
from polypref.llms.openai_live import LiveRequests
from polypref.llms.openai_wire import FATAL, FORMATS, OPTIONS_FORMAT, OpenAIJudgeConfig
from polypref.llms.ratelimit import AdaptiveLimiter, EndpointPool
from polypref.safety.provenance import public
from polypref.safety.secrets import redact_url, register, register_url, scrub

log = logging.getLogger("polypref.llms.openai")

STOP_POLL_S = 0.2  # how often a caller waiting for its requests looks for a stop request


class OpenAILLM(LiveRequests, BatchAPI):
    """An OpenAI-compatible API (or a fleet of endpoints) as a transport (``llms.open``): callers may call at once,
    sharing one event loop, one client per endpoint and one adaptive limit."""

    serialize_calls = False  # shard threads may call at once: they share the loop and the limiter

    def __init__(
        self,
        config: OpenAIJudgeConfig,
        seed: int,
        workdir: Path | None = None,
        transport: Any = None,  # an httpx2 transport, for fault-injection tests
        section: str = "judge",  # the config section messages name (a generator is not the judge)
    ):
        self.config = config
        self.workdir = workdir
        self.transport = transport
        self.section = section
        self._api_key = api_key(config, section)
        if config.api_key_env is not None:
            register(self._api_key)
        for url in config.endpoints:
            register_url(url)
        self._where = ", ".join(redact_url(url) for url in config.endpoints)  # for messages
        # per endpoint (base URL + this model): what one refused, it is not asked again; the others keep theirs
        first = "json_schema" if config.response_format == "auto" else config.response_format
        self._formats = [first] * len(config.endpoints)
        self._options_format = [True] * len(config.endpoints)  # until it refuses a JSON schema for named options
        self._rng = random.Random(seed)
        per_s = {
            "requests_per_s": config.max_requests_per_minute / 60 if config.max_requests_per_minute else None,
            "tokens_per_s": config.max_tokens_per_minute / 60 if config.max_tokens_per_minute else None,
        }
        self.limiter = EndpointPool(
            [AdaptiveLimiter(config.concurrency, config.max_concurrency, **per_s) for _ in config.endpoints]
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._shared: list[Any] | None = None  # a client per endpoint, made on the transport's event loop
        self._in_flight: set[asyncio.Future[Completion]] = set()  # every live request task, all shards
        self._fatal: str | None = None  # set once: the message every later call fails with
        self._fatal_type: type[JudgeFatalError] = JudgeFatalError  # ... and as what (EndpointUnreachable)
        self._probe: asyncio.Future[None] | None = None  # the endpoints' probe, before the first request
        self.params = config.model_dump(exclude={"backend", "model", "api_key_env"})
        self.params["base_url"] = public(config.base_url, "base_url")  # a URL or a fleet's list, credentials out

    @staticmethod
    def environment(config: OpenAIJudgeConfig, section: str = "judge") -> list[tuple[str, str]]:
        """The key, in the environment (``key_problem``)."""
        problem = key_problem(config, section)
        return [problem] if problem else []

    # -- client -------------------------------------------------------------------------------------
    def _client(self, base_url: str) -> Any:
        import httpx2
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        if self.transport is not None:
            http = httpx2.AsyncClient(transport=self.transport)
        else:
            # openai's pool keeps 100 idle connections; past 100 requests in flight (max_concurrency 128) each
            # answer closed one and the next request opened another: a TCP handshake, and a server thread, per call
            keep = max(100, self.config.max_concurrency)
            http = DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=keep))
        return AsyncOpenAI(
            base_url=base_url,
            api_key=self._api_key,
            max_retries=0,  # retries are ours
            timeout=self.config.timeout_s,
            http_client=http,
        )

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Run on the transport's own event loop, so every shard thread shares one client, connection pool and
        concurrency limit, and micro-batches of different shards overlap instead of taking turns.

        While waiting, this thread looks for a stop request (``interrupt.stop_requested``: a signal, or this
        thread's work called off) and passes it to the loop, which is where requests wait for their backoff."""
        self._raise_if_fatal()  # another shard hit a setup error: send nothing
        if not requests:
            return []
        loop, stop = self._event_loop(), asyncio.Event()  # bound to the loop when first awaited there
        run = self._batch if self.config.batch_api else self._live
        future = asyncio.run_coroutine_threadsafe(run(requests, stop), loop)
        told = False
        while True:
            if not told and stop_requested():
                told = True
                asyncio.run_coroutine_threadsafe(self._halt(stop), loop)
            if futures.wait([future], timeout=STOP_POLL_S).done:
                return future.result()

    async def _halt(self, stop: asyncio.Event) -> None:
        """A stop: this call sends nothing new, and its requests waiting for a slot or a retry end now."""
        stop.set()
        await self.limiter.wake()

    def _clients(self) -> list[Any]:
        if self._shared is None:  # made on the loop that will use them
            self._shared = [self._client(url) for url in self.config.endpoints]
        return self._shared

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="polypref-openai", daemon=True)
                self._thread.start()
            return self._loop

    # -- setup errors -------------------------------------------------------------------------------
    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal_type(self._fatal) from None  # no chained client error: it may quote the request

    async def _probed(self) -> None:
        """Probe every endpoint once, before this transport's first request; concurrent calls wait for the same
        probe. An injected transport (fault-injection tests) stands for the endpoint: nothing to probe."""
        if self.transport is not None:
            return
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._probe_endpoints())
        await asyncio.shield(self._probe)

    async def _probe_endpoints(self) -> None:
        # clients of their own, closed after: the requests then open their connections as they would unprobed
        clients = [self._client(url) for url in self.config.endpoints]
        try:
            found = await probe.probe_all(clients, self.config.model)
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        named = [(redact_url(url), finding) for url, finding in zip(self.config.endpoints, found, strict=True)]
        for where, finding in named:
            if finding is not None and finding.status is not None:  # the key, the model or the URL
                self._fail(finding.status, finding.detail, where)
        dead = [(where, finding.detail) for where, finding in named if finding is not None]
        if dead:
            self._fatal_type = EndpointUnreachable
            self._fatal = probe.unreachable_message(self.section, dead)
            self._raise_if_fatal()
        log.debug("%s: answering, for %s", self._where, self.config.model)

    def _fail(self, status: int, message: str, where: str | None = None) -> NoReturn:
        """Stop the whole transport (its judge or generator): one setup error means every request would fail the
        same way (an endpoint of a fleet that refuses the key or the model is a setup error too: fix it or leave it
        out)."""
        if self._fatal is None:
            advice = FATAL[status].replace("judge.", f"{self.section}.")  # our own words, never the server's
            self._fatal = scrub(f"{where or self._where} answered HTTP {status}: {message}. {advice}")
            current = asyncio.current_task()
            for task in list(self._in_flight):
                if task is not current:
                    task.cancel()
        raise JudgeFatalError(self._fatal) from None  # no chained client error: it may quote the request

    # -- live requests ------------------------------------------------------------------------------
    def _request_format(self, request: Request | None = None, endpoint: int = 0) -> str:
        # a question with named options asks for one of them (a JSON schema enum) until the endpoint refuses that
        if request is not None and request.options and self._options_format[endpoint]:
            return OPTIONS_FORMAT
        # choice mode asks for one letter; text mode (response generation) for free text: no output constraint
        return "none" if self.config.mode in ("choice", "text") else self._formats[endpoint]

    def _downgrade_format(self, used: str, message: str, endpoint: int = 0) -> bool:
        """In auto mode, an endpoint that rejects the response_format gets the next simpler one from then on.

        Only for an answer that says the format is unsupported (see ``format_rejected``): any other 400, such as
        a prompt over the context length, is about that one request and must not cost the rest of the run its
        structured output.
        """
        if self.config.response_format != "auto" or used == "none" or self.config.mode in ("choice", "text"):
            return False
        if self._formats[endpoint] == used:  # concurrent requests may have downgraded already
            self._formats[endpoint] = fallback = FORMATS[FORMATS.index(used) + 1]
            where = redact_url(self.config.endpoints[endpoint])
            log.warning(
                "server rejected response_format %s (%s); using %s at %s", used, scrub(message)[:160], fallback, where
            )
        return True

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._shared is not None:
            for client in self._shared:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=30)
            self._shared = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        loop.close()


def key_problem(config: Any, section: str = "judge") -> tuple[str, str] | None:
    """The one check of an OpenAI-compatible backend's key, for every caller (a build's checks before any work,
    the generators', ``api_key``): (field, reason) when the variable ``api_key_env`` names is not set."""
    env = getattr(config, "api_key_env", None)
    if env is None or os.environ.get(env):
        return None
    return (
        f"{section}.api_key_env",
        f"environment variable {env} is not set (the key is read from the environment, never from the config; "
        "use null for a server without authentication)",
    )


def api_key(config: OpenAIJudgeConfig, section: str = "judge") -> str:
    """The key from the environment; servers without auth (api_key_env: null) get a placeholder."""
    if config.api_key_env is None:
        return "EMPTY"
    if problem := key_problem(config, section):
        raise PolyprefError(": ".join(problem))
    return os.environ[config.api_key_env]
