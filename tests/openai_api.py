"""A stand-in for a remote OpenAI-compatible API, on 127.0.0.1: what integration tests judge against.

A real HTTP server (stdlib ``ThreadingHTTPServer``) speaking /v1/chat/completions, so everything on our side is
the real code: the openai client and its HTTP stack, the judge, the CLI, Prefect. Knobs make it misbehave the
ways remote APIs do: answer slowly, refuse every request with one status, fail prompts containing some text,
refuse structured output, reject some prompts as too long, and repeat the request's headers in error bodies
(as some servers and proxies do; that is how keys leak). For response generation it can also answer in free text
(``reply``) and start failing after a number of requests (``fail_after``), as a server that goes down mid-run.
``GET /v1/models`` lists the models it serves (what a judge probes before its first request; ``models``), or is
missing (``models_route``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERDICT = {"rationale": "Closer to what I think.", "choice": "A", "strength": 4, "confidence": 80}


class ChatAPIServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a client opening many connections at once is queued, not reset (default 5)

    def __init__(
        self,
        delay: float = 0.0,
        status: int = 200,
        fail_text: str | None = None,
        too_long_text: str | None = None,
        refuse_json_schema: bool = False,
        echo_headers: bool = False,
        reply: Callable[[dict], tuple[str | None, str]] | None = None,
        fail_after: int | None = None,
        rpm: int | None = None,
        rate_headers: bool = True,
        throttle: int = 0,
        retry_after: str | None = None,
        models: list[str] | None = None,
        models_route: bool = True,
    ):
        """``status``: answer every request with this error; ``fail_text``: prompts containing it get HTTP 503;
        ``too_long_text``: prompts containing it get a 400 context-length error; ``refuse_json_schema``: a
        json_schema response_format gets a 400 "not supported"; ``echo_headers``: error bodies repeat the
        request headers, Authorization included; ``reply``: answer with ``reply(body) -> (content, finish_reason)``
        instead of a verdict (free text); ``fail_after``: requests after the first ``fail_after`` get HTTP 503
        (an attribute: set it to None to bring the server back); ``rpm``: a request budget per minute, kept as
        OpenAI keeps it (a token bucket refilled continuously, here holding one second's worth), told in
        x-ratelimit-* headers on every answer (``rate_headers`` False: in none, as vLLM's server and most gateways) and
        refused with HTTP 429 past it; ``throttle``: the first ``throttle``
        requests get HTTP 429; ``retry_after``: the Retry-After header of every 429; ``models``: what
        ``GET /v1/models`` lists (None: an empty list, which names no model, so any is taken), and when given, a
        chat request for another model gets HTTP 404 as vLLM answers it; ``models_route``: False answers
        ``GET /v1/models`` with HTTP 404, as a server without the route. ``statuses`` lists the status of every
        answer to a chat request, in order; ``listed`` counts the ``GET /v1/models`` requests."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.status = status
        self.fail_text = fail_text
        self.too_long_text = too_long_text
        self.refuse_json_schema = refuse_json_schema
        self.echo_headers = echo_headers
        self.reply = reply
        self.fail_after = fail_after
        self.throttle = throttle
        self.retry_after = retry_after
        self.models = models
        self.models_route = models_route
        self.listed = 0
        self.statuses: list[int] = []
        self.bodies: list[dict] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.rpm = rpm
        self.rate_headers = rate_headers
        self.refused = 0  # requests answered 429 for the rate limit
        self.answered_at: list[float] = []  # monotonic time of each request admitted under the rate limit
        self.received_at: list[float] = []  # monotonic time of every request
        self._tokens = (rpm or 0) / 60
        self._refilled = time.monotonic()
        # TCP connections that carried chat requests (a client that keeps them alive opens few); a connection
        # that only carried a model listing (a judge's probe, on a client of its own) is not one of them
        self.connections = 0

    def admit(self) -> tuple[bool, dict[str, str]]:
        """Whether the rate limit lets a request through now, and the headers that say where the budget is."""
        with self.lock:
            rate = (self.rpm or 0) / 60
            now = time.monotonic()
            self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            ok = self._tokens >= 1
            if ok:
                self._tokens -= 1
                self.answered_at.append(now)
            else:
                self.refused += 1
            headers = {
                "x-ratelimit-limit-requests": str(int(rate)),
                "x-ratelimit-remaining-requests": str(int(self._tokens)),
                "x-ratelimit-reset-requests": f"{(rate - self._tokens) / rate * 1000:.0f}ms",
            }
            return ok, headers if self.rate_headers else {}

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.bodies)

    def asked(self, kind: str) -> int:
        """How many requests of one ``kind`` (see ``request_kind``) the server received."""
        with self.lock:
            return sum(request_kind(body) == kind for body in self.bodies)


def serve(server: ChatAPIServer) -> Iterator[ChatAPIServer]:
    """Run ``server`` on a thread for the duration of a ``for`` loop or a fixture."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def completion(model: str, content: str | None, finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class _Handler(BaseHTTPRequestHandler):
    server: ChatAPIServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real API servers answer: no new connection per request
    # TCP_NODELAY, as uvicorn (vLLM, most API servers) sets it: with Nagle's algorithm on, an answer written as
    # headers then body waits for the client's delayed ACK, ~40 ms a request whatever the server's speed
    disable_nagle_algorithm = True
    chatted = False  # this connection carried a chat request (one handler per connection)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        api = self.server
        with api.lock:
            if not self.chatted:
                api.connections += 1
                self.chatted = True
            api.received_at.append(time.monotonic())
            api.bodies.append(body)
            api.authorizations.append(self.headers.get("authorization", ""))
            number = len(api.bodies)
        time.sleep(api.delay)
        echo = (
            f" (request headers: {'; '.join(f'{k}: {v}' for k, v in self.headers.items())})" if api.echo_headers else ""
        )
        prompt = body["messages"][-1]["content"]
        down = api.fail_after is not None and number > api.fail_after
        admitted, self.limit_headers = api.admit() if api.rpm else (True, {})
        if not admitted or number <= api.throttle:
            self._error(429, "Rate limit reached for requests")
        elif self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}{echo}")
        elif api.models is not None and body.get("model") not in api.models:
            self._error(404, f"The model `{body.get('model')}` does not exist.")
        elif api.status != 200:
            self._error(api.status, f"Incorrect API key provided{echo}")
        elif api.refuse_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            self._error(400, f"response_format json_schema is not supported{echo}")
        elif api.too_long_text and api.too_long_text in prompt:
            self._error(400, f"maximum context length exceeded{echo}")
        elif (api.fail_text and api.fail_text in prompt) or down:
            self._error(503, f"overloaded, try again later{echo}")
        elif api.reply is not None:
            self._send(200, completion(body["model"], *api.reply(body)))
        else:
            self._send(200, completion(body["model"], json.dumps(VERDICT)))

    def do_GET(self) -> None:
        """``GET /v1/models``: the models it serves (an OpenAI list object), or the refusal every request gets."""
        api = self.server
        with api.lock:
            api.listed += 1
        self.limit_headers = {}  # no rate limit on listings
        echo = (
            f" (request headers: {'; '.join(f'{k}: {v}' for k, v in self.headers.items())})" if api.echo_headers else ""
        )
        if self.path != "/v1/models" or not api.models_route:
            self._error(404, f"no route {self.path}{echo}", count=False)
        elif api.status != 200:
            self._error(api.status, f"Incorrect API key provided{echo}", count=False)
        else:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "stand-in"} for m in api.models or ()]
            self._send(200, {"object": "list", "data": data}, count=False)

    def _error(self, status: int, message: str, count: bool = True) -> None:
        self._send(status, {"error": {"message": message, "type": "stand_in_error"}}, count)

    def _send(self, status: int, payload: dict, count: bool = True) -> None:
        data = json.dumps(payload).encode()
        with self.server.lock:
            if count:  # chat answers only: tests read the sequence of them
                self.server.statuses.append(status)
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in getattr(self, "limit_headers", {}).items():
                self.send_header(name, value)
            if status == 429 and self.server.retry_after is not None:
                self.send_header("retry-after", self.server.retry_after)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the build was killed while this request waited: nobody is listening

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        return None


def request_kind(body: dict) -> str:
    """What a request asks for, read off its prompts: "judgment" (a persona judging a pair), "persona-free" (the
    model judging a pair as itself, for the map), "survey" (a fidelity question, to a persona or persona-free)
    or "generation" (a response)."""
    system = body["messages"][0]["content"] if len(body["messages"]) > 1 else ""
    user = body["messages"][-1]["content"]
    if "\nAnswer options:\n" in user:  # with a persona in the system message, or persona-free without one
        return "survey"
    if "<<<RESPONSE A>>>" not in user:
        return "generation"
    return "judgment" if "The person you are:" in system else "persona-free"


def prefer_the_longer(body: dict) -> tuple[str, str]:
    """A ``reply`` for a model with a taste: as a judge (with a persona or without) it prefers the longer
    response, so both orders agree and pairs survive the filters; asked a survey question with named options
    (fidelity), it picks the first; asked for a response instead (generation), it writes one that differs per
    seed."""
    user = body["messages"][-1]["content"]
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    if "answer" in schema.get("properties", {}):
        return json.dumps({"answer": schema["properties"]["answer"]["enum"][0]}), "stop"
    if "<<<RESPONSE A>>>" not in user:
        return f"Response {body['seed']} from {body['model']}: " + "more " * (body["seed"] % 7), "stop"
    first, second = (user.split(f"<<<RESPONSE {s}>>>")[1].split(f"<<<END RESPONSE {s}>>>")[0] for s in "AB")
    return json.dumps({**VERDICT, "choice": "A" if len(first) >= len(second) else "B"}), "stop"


def judge_settings(endpoint: ChatAPIServer | str) -> list[str]:
    """--set overrides that judge through ``endpoint``: a server, or a base_url (a YAML list: a fleet)."""
    return [
        "judge.backend=openai",
        "judge.model=served-model",
        f"judge.base_url={endpoint if isinstance(endpoint, str) else endpoint.base_url}",
        "judge.api_key_env=null",
        "judge.micro_batch=64",
        "judge.concurrency=8",
    ]
