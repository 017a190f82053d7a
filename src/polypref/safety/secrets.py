"""Keep credentials out of everything polypref writes: Parquet columns, warnings, log lines, the card.

Servers echo what they were sent (headers, URLs) in error bodies, and HTTP libraries log request URLs, so a key
can reach the output by paths no single call site controls. ``scrub`` removes every secret we know of (the values
``register`` was given, the well-known token environment variables) and everything that looks like a credential
by its shape (an Authorization header, a bearer token, ``user:pass@`` in a URL, ``?api_key=`` parameters).
``install_log_redaction`` applies it to every log record before any handler, ours or Prefect's, formats it.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import traceback
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"

# Environment variables whose values are secrets wherever they appear (the judge registers its own key variable).
SECRET_ENV_VARS: tuple[str, ...] = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

# Query parameters that carry credentials (compared case-insensitively, "-" and "_" alike).
SECRET_PARAMS: frozenset[str] = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "sig",
        "signature",
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
    }
)

# Shorter values are not masked: replacing every "abc" in every text would garble unrelated output.
MIN_SECRET_LENGTH = 4

_HEADER = re.compile(
    r"""(?ix)
    (\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)      # the header name, as text, JSON or a Python repr
    (?:(bearer|basic|token|digest|apikey)\s+)?              # an optional scheme, kept: it says what went wrong
    ([^\s"',;}\]]+)                                         # the credential
    """
)
_KEY_HEADER = re.compile(
    r"""(?ix)(\b(?:x-api-key|api-key|x-goog-api-key|x-auth-token|openai-api-key)\b["']?\s*[:=]\s*["']?)([^\s"',;}\]&]+)"""
)
# A bearer token outside a header: needs a digit or a symbol, so "the bearer of bad news" stays as it is.
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?=[A-Za-z0-9._~+/-]*[0-9._~+/-])[A-Za-z0-9._~+/-]{8,}=*")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#'\"<>]+@")
_QUERY_PARAM = re.compile(r"(?i)([?&;](?:" + "|".join(sorted(SECRET_PARAMS)).replace("_", "[-_]") + r")=)[^&#\s\"'<>]+")

_lock = threading.Lock()
_registered: set[str] = set()
_pattern: re.Pattern[str] | None = None
_pattern_key: frozenset[str] = frozenset()


def register(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (API keys, tokens, passwords read at run time).

    Also masks the forms a value travels in: percent-decoded, and base64 as in an HTTP Basic header.
    """
    if not value or len(value.strip()) < MIN_SECRET_LENGTH:
        return
    forms = {value, unquote(value)}
    with _lock:
        _registered.update(f for f in forms if len(f) >= MIN_SECRET_LENGTH)


def register_url(url: str | None) -> None:
    """Register the credentials inside a URL (``scheme://user:pass@host``) and its secret query parameters."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        register(parts.password)
        user = unquote(parts.username or "")
        password = unquote(parts.password)
        register(base64.b64encode(f"{user}:{password}".encode()).decode())  # what an echoed Basic header shows
    elif parts.username:  # a lone token as userinfo: http://TOKEN@host
        register(parts.username)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if _secret_param(name):
            register(value)


def known_secrets() -> frozenset[str]:
    """Every value masked by value: registered ones and the secret environment variables set now."""
    with _lock:
        values = set(_registered)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value.strip()) >= MIN_SECRET_LENGTH:
            values.add(value)
    return frozenset(values)


def scrub(text: Any) -> str:
    """``text`` (anything; non-strings are str()-ed) with every known or credential-shaped secret masked."""
    if text is None:
        return ""
    text = text if isinstance(text, str) else str(text)
    if not text:
        return text
    pattern = _known_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2] + ' ' if m[2] else ''}{MASK}", text)
    text = _KEY_HEADER.sub(lambda m: f"{m[1]}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m[1]}{MASK}@", text)
    return _QUERY_PARAM.sub(lambda m: f"{m[1]}{MASK}", text)


def scrub_optional(text: str | None) -> str | None:
    """``scrub`` that keeps None as None (nullable columns)."""
    return None if text is None else scrub(text)


def redact_url(url: str) -> str:
    """A URL safe to print or store: no ``user:pass@``, secret query parameters masked, known secrets masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if _secret_param(k) else v) for k, v in pairs], safe="*")
        clean = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL we can take apart: mask by shape alone
        clean = url
    return scrub(clean)


def install_log_redaction() -> None:
    """Scrub every log record as it is made, before any handler (ours, Prefect's, pytest's) formats it.

    Wraps logging's record factory, so records of every logger pass through it, including ones whose handlers
    were configured before this call. Idempotent: a second call adds nothing.
    """
    with _lock:
        current = logging.getLogRecordFactory()
        if getattr(current, "_polypref_redaction", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = current(*args, **kwargs)
            _scrub_record(record)
            return record

        factory._polypref_redaction = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what there is, masked
        message = f"{record.msg} {record.args}"
    record.msg, record.args = scrub(message), None
    if record.exc_info and record.exc_info[0] is not None:
        # handlers format exc_info lazily and reuse exc_text when it is set: set it, masked
        record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


def _secret_param(name: str) -> bool:
    return name.lower().replace("-", "_") in SECRET_PARAMS


def _known_pattern() -> re.Pattern[str] | None:
    global _pattern, _pattern_key
    values = known_secrets()
    if not values:
        return None
    with _lock:
        if values != _pattern_key or _pattern is None:
            # longest first, so a secret that contains another is masked whole
            _pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
            _pattern_key = values
        return _pattern


def _reset_for_tests() -> None:
    """Forget registered values (tests register throwaway keys)."""
    global _pattern, _pattern_key
    with _lock:
        _registered.clear()
        _pattern, _pattern_key = None, frozenset()
