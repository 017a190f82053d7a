"""The OpenAI-compatible wire format, as pure functions: the judge's settings, request bodies (live and Batch API
lines), decoding answers, and telling apart what error answers mean. No I/O; ``llms/openai.py`` sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from polypref.llms.base import NO_ANSWER, REJECTED, Completion, LLMJudgeConfig, Request, request_schema
from polypref.safety.secrets import scrub
from polypref.strict import StrictModel

FORMATS = ("json_schema", "json_object", "none")
TERMINAL = {"completed", "failed", "expired", "cancelled"}
FATAL = {  # answers about the setup, not the request: the run stops, saved micro-batches are kept
    401: "Check the key in the variable judge.api_key_env names.",
    403: "The key lacks access to this model or endpoint.",
    404: "Check judge.base_url and judge.model.",
}
OPTIONS_FORMAT = "options"  # a question's named options as a JSON schema enum: {"answer": <option>}
FORMAT_REFUSED = f"{REJECTED}: response_format unsupported: "
# Worth asking again: the server (or something in front of it) failed, not the request.
RETRY_STATUSES = frozenset({408, 409, 425, 429})
# Per-request error codes inside a Batch API result that mean "not processed", not "refused".
BATCH_NOT_RUN = frozenset({"batch_expired", "batch_cancelled", "batch_failed", "rate_limit_exceeded", "server_error"})

# A server that lacks the requested response_format says so in words like these (the API's `param` field,
# when it names response_format, settles it too). Seen in the wild:
#   OpenAI, 400, param "response_format": "Invalid parameter: 'response_format' of type 'json_schema' is not
#     supported with this model." / "Unsupported parameter: 'response_format' ..." (some reasoning models)
#   llama.cpp server, 500: 'response_format type must be one of "text" or "json_object", but got: json_schema'
#   llama-cpp-python, 500 for json_schema; 422 (FastAPI) "Input should be 'text' or 'json_object'" at
#     body.response_format.type
#   vLLM, 400: "The provided JSON schema contains features not supported by xgrammar."
#   Groq and others: "`response_format` json_schema is not supported with this model"
# Both a format word and a refusal word must appear: "maximum context length" (400) mentions neither, and a 500
# that mentions JSON in passing is an ordinary server error.
FORMAT_WORDS = re.compile(
    r"response[_ ]?format|json[_ ]?schema|json[_ ]?object|json[_ ]mode|structured[_ ]?outputs?"
    r"|guided[_ ]?(?:json|decoding)|x?grammar",
    re.IGNORECASE,
)
REFUSAL_WORDS = re.compile(
    r"not supported|unsupported|does not support|doesn't support|not available|not implemented|not enabled"
    r"|must be one of|should be|only supports?|not allowed|not permitted|unknown|unrecognized|invalid|cannot"
    r"|can't|unable to",
    re.IGNORECASE,
)
FORMAT_STATUSES = frozenset({400, 415, 422, 500, 501})


def format_rejected(status: int, message: str, param: str | None = None) -> bool:
    """Whether an error answer says the server does not support the response_format we asked for."""
    if status not in FORMAT_STATUSES:
        return False
    if param and "response_format" in param:
        return True
    return bool(FORMAT_WORDS.search(message) and REFUSAL_WORDS.search(message))


class BadResponse(ValueError):
    """A 200 whose body is not a usable chat completion: the server failed, so it is retried like a 5xx."""


class Prices(StrictModel):
    prompt_per_million: float = Field(ge=0, description="USD per 1M prompt tokens")
    completion_per_million: float = Field(ge=0, description="USD per 1M completion tokens")


class OpenAIJudgeConfig(LLMJudgeConfig):
    backend: Literal["openai"] = "openai"
    base_url: str | list[str] = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible endpoint, ending in /v1; or a list of endpoints serving the same model (a "
        "fleet, such as one vLLM server per GPU): each request goes to the one with the most free slots, and each "
        "has its own adaptive limit (concurrency and max_concurrency apply per endpoint)",
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (null: the server needs none)"
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight to start with")
    max_concurrency: int = Field(128, ge=1, description="Upper bound the adaptive limit may grow to")
    max_requests_per_minute: int | None = Field(
        None,
        ge=1,
        description="The endpoint's request limit, where you know it (per endpoint of a fleet): requests are paced "
        "under it rather than run into; null: adapt to the server's 429s and rate-limit headers",
    )
    max_tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="The endpoint's token limit (per endpoint of a fleet), paced likewise; a request counts its "
        "prompt (a token per 4 characters) and max_tokens (1 in choice mode), as providers reserve them",
    )
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

    @field_validator("base_url")
    @classmethod
    def _endpoints(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("list at least one endpoint")
        if any(not url.strip() for url in urls):
            raise ValueError("an endpoint is empty")
        if len(set(urls)) < len(urls):
            raise ValueError("an endpoint is listed twice")
        return value

    @model_validator(mode="after")
    def _batch_endpoint(self) -> OpenAIJudgeConfig:
        if self.batch_api and len(self.endpoints) > 1:
            raise ValueError("batch_api: the Batch API takes one endpoint; give base_url as one URL")
        return self

    @property
    def endpoints(self) -> list[str]:
        """``base_url`` as a list: one endpoint, or a fleet."""
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


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
    if response_format == OPTIONS_FORMAT and request.options:
        schema = {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "enum": list(request.options)}},
                "required": ["answer"],
                "additionalProperties": False,
            },
        }
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif response_format == "json_schema":
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


def completion_from(body: Any) -> Completion:
    """A chat.completion object (decoded JSON) -> Completion; BadResponse when it is not one."""
    if not isinstance(body, dict):
        raise BadResponse(f"expected a JSON object, got {type(body).__name__}")
    if body.get("error"):  # some gateways answer 200 with an error object
        raise BadResponse(f"error object in a 200 answer: {_short(body['error'])}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BadResponse("response without choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise BadResponse("choice without a message")
    text = message.get("content")
    if isinstance(text, list):  # content parts
        text = "".join(str(p.get("text", "")) for p in text if isinstance(p, dict))
    if text is not None and not isinstance(text, str):
        raise BadResponse(f"message content is a {type(text).__name__}")
    refusal = message.get("refusal")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        choice_logprobs=_choice_logprobs(choice.get("logprobs")),
        refusal=refusal if isinstance(refusal, str) else None,
    )


def _choice_logprobs(logprobs: Any) -> dict[str, float] | None:
    """First-token log probabilities; None when absent or malformed (choice mode then reports no_logprobs)."""
    try:
        content = (logprobs or {}).get("content") or []
        if not content:
            return None
        first = content[0]
        found = {str(t["token"]).strip(): float(t["logprob"]) for t in first.get("top_logprobs") or []}
        found.setdefault(str(first["token"]).strip(), float(first["logprob"]))
        return found
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def decode_completion(content: bytes) -> Completion:
    """The body of a 200 answer -> Completion; BadResponse for a cut-off or otherwise unusable body."""
    try:
        body = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadResponse(f"body is not valid JSON ({e}; {len(content)} bytes)") from None
    return completion_from(body)


def batch_results(text: str, fmt: str) -> tuple[dict[str, Completion], tuple[int, str] | None]:
    """Batch output/error file -> Completion per custom_id, and the first setup error (status, message) if any.

    Per request, by the same rules as live calls: not processed or failed on the server side -> no_answer;
    refused for what it is -> request_rejected (format refusals are marked so the caller can downgrade).
    """
    results: dict[str, Completion] = {}
    fatal: tuple[int, str] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            cid = str(row["custom_id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # no custom_id to match: its request ends as "without a result"
        response = row.get("response") if isinstance(row.get("response"), dict) else {}
        status = response.get("status_code")
        status = status if isinstance(status, int) else 200
        error = row.get("error")
        if error or status >= 400:
            body = response.get("body")
            detail = error or (body.get("error") if isinstance(body, dict) else body)
            message = _short(detail)
            code = str(detail.get("code") or "") if isinstance(detail, dict) else ""
            param = detail.get("param") if isinstance(detail, dict) else None
            if status in FATAL:
                fatal = fatal or (status, message)
                results[cid] = Completion(error=f"{NO_ANSWER}: HTTP {status}: {message}", response_format=fmt)
            elif format_rejected(status, message, param):
                results[cid] = Completion(error=f"{FORMAT_REFUSED}HTTP {status}: {message}", response_format=fmt)
            elif error or code in BATCH_NOT_RUN or status in RETRY_STATUSES or status >= 500:
                results[cid] = Completion(error=f"{NO_ANSWER}: batch request not run: {message}", response_format=fmt)
            else:
                results[cid] = Completion(error=f"{REJECTED}: HTTP {status}: {message}", response_format=fmt)
            continue
        try:
            completion = completion_from(response.get("body"))
        except BadResponse as e:
            completion = Completion(error=f"{NO_ANSWER}: bad response in batch result: {e}")
        completion.response_format = fmt
        results[cid] = completion
    return results, fatal


def format_refused(completion: Completion) -> bool:
    return (completion.error or "").startswith(FORMAT_REFUSED)


def _short(detail: Any, size: int = 300) -> str:
    if isinstance(detail, dict) and detail.get("message"):
        return scrub(str(detail["message"]))[:size]
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return scrub(text)[:size]


def error_message(error: Any) -> str:
    """The server's own words for an error answer, secrets masked (error bodies may echo the request)."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return scrub(str(inner["message"]))[:300]
        if isinstance(inner, dict) and inner.get("detail"):  # FastAPI validation errors
            return _short(inner["detail"])
    return scrub(str(getattr(error, "message", error)))[:300]
