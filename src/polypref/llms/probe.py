"""Probing OpenAI-compatible endpoints before the first request, so that one that cannot serve stops the work
within seconds, named with its cause. Without it a closed port took 13 minutes of retries to end in exit 3, its
cause only in the judgments' ``error`` column.

One cheap request per endpoint, every endpoint at once: ``GET /models`` (the client's ``models.list()``), with a
short timeout and no retries. What the answer means:

- no connection (refused, unknown host, TLS, nothing within ``PROBE_TIMEOUT_S``): unreachable;
- 401 / 403: the key is refused (a setup error, as for a request);
- the model is not listed, or there is no ``/models`` route (404: some servers lack it, and a wrong base_url
  gives the same): one chat request of one token settles it, since listings leave out names servers accept
  (aliases, Ollama's implicit ``:latest``, Azure deployments). A 401/403/404 to it is a setup error; any
  other answer lets the work go on;
- anything else (429, 5xx, an empty or unreadable listing): the endpoint is up, and the work's own retries
  deal with the rest.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from polypref.errors import first_line
from polypref.llms.openai_wire import FATAL, error_message
from polypref.safety.secrets import scrub

PROBE_TIMEOUT_S = 10.0
# the smallest question a chat endpoint answers: asked only when the listing cannot vouch for the model
_CONFIRM_MESSAGES = [{"role": "user", "content": "Reply with OK."}]


@dataclass(frozen=True)
class Finding:
    """Why an endpoint cannot serve the work."""

    status: int | None  # the HTTP status of a setup error (401, 403 or 404); None: the endpoint was not reached
    detail: str  # the server's words for a status, else the cause ("connection refused")


async def probe_all(clients: Sequence[Any], model: str, timeout: float = PROBE_TIMEOUT_S) -> list[Finding | None]:
    """``probe`` every endpoint (an ``AsyncOpenAI`` client each) at once: one finding or None per client."""
    return list(await asyncio.gather(*(probe(client, model, timeout) for client in clients)))


async def probe(client: Any, model: str, timeout: float = PROBE_TIMEOUT_S) -> Finding | None:
    """What keeps the endpoint behind ``client`` from serving ``model`` (None: nothing found)."""
    import openai

    quick = client.with_options(timeout=timeout, max_retries=0)
    try:
        listed = [entry.id for entry in (await quick.models.list()).data]
    except openai.APIStatusError as e:
        if e.status_code == 404:  # no /models here, or nothing at all at this base_url: a request tells which
            return await _confirm(quick, model, timeout)
        return Finding(e.status_code, error_message(e)) if e.status_code in FATAL else None
    except openai.APIConnectionError as e:  # timeouts included
        return Finding(None, unreachable_cause(e, timeout))
    except (openai.APIError, TypeError, ValueError, AttributeError):  # answered, with something else than a listing
        return None
    if not listed or model in listed:
        return None
    return await _confirm(quick, model, timeout, listed)


async def _confirm(client: Any, model: str, timeout: float, listed: Sequence[str] = ()) -> Finding | None:
    """Ask for one token of ``model``: only a setup error (or no connection) in answer is a finding."""
    import httpx2
    import openai

    body = {"model": model, "messages": _CONFIRM_MESSAGES, "max_tokens": 1}
    try:
        await client.post("/chat/completions", cast_to=httpx2.Response, body=body)
    except openai.APIStatusError as e:
        if e.status_code not in FATAL:
            return None
        shown = ", ".join(listed[:8]) + (f" and {len(listed) - 8} more" if len(listed) > 8 else "")
        named = f" (it lists {shown}; not {model})" if listed else ""
        return Finding(e.status_code, f"{error_message(e).rstrip('.')}{named}")
    except openai.APIConnectionError as e:
        return Finding(None, unreachable_cause(e, timeout))
    except openai.APIError:
        return None
    return None


def unconnectable(urls: Sequence[str], timeout: float = PROBE_TIMEOUT_S) -> list[str | None]:
    """Per base URL, why no TCP connection to it can be opened (None: one can, or a proxy stands between):
    the build's first check, made before Prefect's flow starts, so a closed port or an unknown host stops it
    at once, with nothing sent. The judge's own probe (``probe``) then checks the key and the model."""
    from concurrent.futures import ThreadPoolExecutor

    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=min(len(urls), 16), thread_name_prefix="polypref-connect") as pool:
        return list(pool.map(lambda url: _connect(url, timeout), urls))


def _connect(url: str, timeout: float) -> str | None:
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    host = urllib.parse.unquote(parts.hostname or "")  # an IPv6 zone: [fe80::1%25eth0]
    if not host or parts.scheme not in ("http", "https"):
        return None  # the client's own error says what is wrong with such a URL
    proxies = urllib.request.getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host):
        return None  # reached through a proxy: a direct connection says nothing
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as e:
        return f"unknown host: {e.strerror or e}"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, ValueError) as e:
        return os.strerror(e.errno).lower() if isinstance(e, OSError) and e.errno else scrub(first_line(e))[:200]


def unreachable_cause(error: BaseException, timeout: float | None = None) -> str:
    """Why a connection failed, in a few words ("connection refused", "unknown host ..."), read off the chain of
    errors the client wraps (the client's own message says only "Connection error.")."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return f"no answer within {timeout:g} s" if timeout else "no answer in time"
    for cause in _chain(error):
        if isinstance(cause, socket.gaierror):
            return f"unknown host: {cause.strerror or cause}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or first_line(cause)}"
        if isinstance(cause, TimeoutError):
            return f"no answer within {timeout:g} s" if timeout else "no answer in time"
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
    return scrub(first_line(list(_chain(error))[-1]))[:200]


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable_message(
    section: str, dead: Sequence[tuple[str, str]], timeout: float = PROBE_TIMEOUT_S, how: str = "GET /models"
) -> str:
    """The stop message for endpoints that cannot be reached: each (redacted URL, cause), and what to do."""
    named = " and ".join(f"{where} ({cause})" for where, cause in dead)
    return scrub(
        f"{section}.base_url: cannot reach {named}; no request was sent (probed with {how}, "
        f"{timeout:g} s). Check that the server is running and that the URL is right, then run the same "
        "command again"
    )
