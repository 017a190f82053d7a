"""The OpenAI transport's live requests: each sent under the adaptive limit, with its own timeout and jittered
retries that honour Retry-After, until an answer, a rejection, or no answer after ``max_retries`` (or at a stop).
Mixed into ``llms.openai.OpenAILLM``, whose clients, probe, setup errors and output formats it uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from polypref.llms import probe
from polypref.llms.base import NO_ANSWER, Completion, Request
from polypref.llms.openai_wire import (
    FATAL,
    OPTIONS_FORMAT,
    REJECTED,
    RETRY_STATUSES,
    BadResponse,
    chat_body,
    decode_completion,
    error_message,
    format_rejected,
)
from polypref.llms.ratelimit import backoff_delay, retry_after, retry_note, stopped_within
from polypref.safety.secrets import redact_url

log = logging.getLogger("polypref.llms.openai")  # the transport's own: one logger for its messages


@dataclass(slots=True)
class Counted(Completion):
    """A completion and the requests it took, retries and format fallbacks included: the judgment's ``attempts``
    (``judges.llm.LLMJudge._row``; a generated response's too), so a unit that got no answer after N retries reads
    N + 1, not 1."""

    requests: int = 1


def counted(completion: Completion, requests: int) -> Counted:
    return Counted(**{f.name: getattr(completion, f.name) for f in fields(Completion)}, requests=requests)


@dataclass(frozen=True, slots=True)
class _Failure:
    """A try that may be retried: what went wrong, whether the server throttled, and the wait it asked for."""

    last: str
    throttled: bool = False
    hint: float | None = None


class LiveRequests:
    """Live requests, for ``OpenAILLM`` (``_live``: a micro-batch's requests, concurrently)."""

    async def _live(self, requests: Sequence[Request], stop: asyncio.Event) -> list[Completion]:
        self._raise_if_fatal()
        await self._probed()
        clients = self._clients()
        tasks = [asyncio.ensure_future(self._one(clients, r, stop)) for r in requests]
        self._in_flight.update(tasks)
        try:
            await asyncio.wait(tasks)
        finally:
            self._in_flight.difference_update(tasks)
            for task in tasks:
                task.cancel()  # no-op for finished ones; stops the rest if this call itself was cancelled
        if self._fatal is not None:
            for task in tasks:  # consumed, so asyncio does not log "exception never retrieved"
                if not task.cancelled():
                    task.exception()
            self._raise_if_fatal()
        return [task.result() for task in tasks]

    async def _one(self, clients: list[Any], request: Request, stop: asyncio.Event) -> Completion:
        """One request to its end: an answer, a rejection, or no answer after ``max_retries`` (or at a stop),
        counting every request sent (``Counted``)."""
        failures = sent = 0
        last, fmt = "", self._request_format(request)
        while True:
            endpoint = await self.limiter.acquire_unless(stop, self._tokens(request))
            if endpoint is None:  # a stop: nothing new is sent
                why = f"{last} (stopped before retry {failures})" if last else "stopped before it was sent"
                why += " again" if sent and not last else ""  # after a refused output format
                return Counted(error=f"{NO_ANSWER}: {why}", response_format=fmt, requests=sent)
            # chosen once the endpoint is known: a format it refused while this request waited is not sent again
            fmt = self._request_format(request, endpoint)
            sent += 1
            outcome = await self._attempt(clients[endpoint], request, endpoint, fmt)
            if outcome is None:
                continue  # the endpoint refused the format, which is no failure of it: at once, in a simpler one
            if isinstance(outcome, Completion):
                return counted(outcome, sent)
            last = outcome.last
            if failures >= self.config.max_retries:
                return Counted(
                    error=f"{NO_ANSWER}: {last} (after {self.config.max_retries} retries)",
                    response_format=fmt,
                    requests=sent,
                )
            delay = self._backoff(outcome, failures, endpoint)
            failures += 1
            if await stopped_within(stop, delay):
                why = f"{last} (stopped before retry {failures} of {self.config.max_retries})"
                return Counted(error=f"{NO_ANSWER}: {why}", response_format=fmt, requests=sent)

    def _tokens(self, request: Request) -> int:
        """What a request counts against a token limit, as providers reserve it: its prompt (a token per 4
        characters, no tokenizer needed) and max_tokens. Zero where no token limit is set."""
        if not self.config.max_tokens_per_minute:
            return 0
        answer = 1 if self.config.mode == "choice" else self.config.max_tokens  # what chat_body asks for
        return sum(len(m.get("content") or "") for m in request.messages) // 4 + answer

    async def _attempt(self, client: Any, request: Request, endpoint: int, fmt: str) -> Completion | _Failure | None:
        """Send ``request`` once: its completion (an answer or a rejection), a failure worth retrying, or None
        to send it again at once (the endpoint refused the output format)."""
        import httpx2
        import openai

        limiter = self.limiter.limiters[endpoint]
        outcome: Completion | _Failure | None = None
        success = False
        try:
            self._raise_if_fatal()  # the run stopped while this request waited for a slot
            body = chat_body(self.config, request, fmt)
            # the body as it is, through the client's plain post: its typed create() walks every field of
            # the body against the SDK's TypedDicts first, ~10 ms of CPU per request (a local server's
            # throughput capped near 100 requests/s), and would need provider fields split off as extra_body.
            # The client still sends, authenticates and turns error answers into APIStatusError.
            response = await client.post("/chat/completions", cast_to=httpx2.Response, body=body)
            limiter.observe_headers(response.headers)
            outcome = decode_completion(response.content)
            outcome.response_format = fmt
            success = True
        except BadResponse as e:
            outcome = _Failure(f"bad response: {e}")
        except openai.APIStatusError as e:
            outcome = self._status_outcome(e, endpoint, fmt)
        except openai.APITimeoutError:
            outcome = _Failure(f"timeout: no answer within {self.config.timeout_s} s")
        except openai.APIConnectionError as e:
            outcome = _Failure(f"connection failed: {probe.unreachable_cause(e)}")
        except openai.APIError as e:  # anything else the client makes of an answer it could not use
            outcome = _Failure(f"bad response: {type(e).__name__}: {error_message(e)}")
        finally:
            throttled = isinstance(outcome, _Failure) and outcome.throttled
            await self.limiter.release(endpoint, throttled=throttled, success=success)
        return outcome

    def _status_outcome(self, error: Any, endpoint: int, fmt: str) -> Completion | _Failure | None:
        """What an error answer means for the request (``_attempt``); a setup error stops the whole judge."""
        status, message, headers = error.status_code, error_message(error), error.response.headers
        self.limiter.limiters[endpoint].observe_headers(headers)
        if status in FATAL:
            self._fail(status, message, redact_url(self.config.endpoints[endpoint]))
        if format_rejected(status, message, getattr(error, "param", None)):
            if fmt == OPTIONS_FORMAT:  # free text then, checked by the caller
                self._options_format[endpoint] = False
                return None
            if self._downgrade_format(fmt, message, endpoint):
                return None
            return Completion(error=f"{REJECTED}: HTTP {status}: {message}", response_format=fmt)
        if status not in RETRY_STATUSES and status < 500:
            return Completion(error=f"{REJECTED}: HTTP {status}: {message}", response_format=fmt)
        return _Failure(f"HTTP {status}: {message}", throttled=status == 429, hint=retry_after(headers))

    def _backoff(self, failure: _Failure, failures: int, endpoint: int) -> float:
        """The wait before retry ``failures`` (0-based), logged; a throttled endpoint is paused meanwhile."""
        cap = self.config.backoff_max_s
        delay = backoff_delay(failures, self.config.backoff_base_s, cap, failure.hint, self._rng)
        if failure.throttled and failure.hint:
            # capped like the delay: a day-long Retry-After must not stall a day
            self.limiter.limiters[endpoint].pause(min(failure.hint, cap))
        where = redact_url(self.config.endpoints[endpoint])
        hint = failure.hint
        level = logging.WARNING if hint is not None and hint > cap else logging.DEBUG  # a cut-short ask is news
        log.log(level, "%s: %s; %s", where, failure.last, retry_note(delay, hint, cap))
        return delay
