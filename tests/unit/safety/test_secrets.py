from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from polypref.safety import secrets
from polypref.safety.secrets import install_log_redaction, redact_url, register, register_url, scrub


@pytest.fixture(autouse=True)
def forget_registered() -> Iterator[None]:
    secrets._reset_for_tests()
    yield
    secrets._reset_for_tests()


def test_registered_values_are_masked_wherever_they_appear():
    key = "sk-proj-Zx81kd02Pq"
    register(key)
    text = f"Incorrect API key provided: {key}. Request: {{'api_key': '{key}'}} {key}{key}"
    assert key not in scrub(text)
    assert scrub(text).startswith("Incorrect API key provided: ***.")


def test_environment_tokens_are_masked_without_registering(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_AbCdEfGhIjKlMnOp")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_QrStUvWxYz012345")
    out = scrub("tokens hf_AbCdEfGhIjKlMnOp and hf_QrStUvWxYz012345 were refused")
    assert "hf_" not in out and out == "tokens *** and *** were refused"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcDEF123456", "Authorization: Bearer ***"),
        ("{'authorization': 'Bearer abcDEF123456'}", "{'authorization': 'Bearer ***'}"),
        ('{"Authorization": "Basic dXNlcjpwYXNz"}', '{"Authorization": "Basic ***"}'),
        ("proxy-authorization=secretvalue1", "proxy-authorization=***"),
        ("x-api-key: 0123456789abcdef", "x-api-key: ***"),
        ("sent bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0 to", "sent bearer *** to"),
        ("GET http://alice:s3cret@host:8000/v1/models", "GET http://***@host:8000/v1/models"),
        ("https://TOKEN123@example.org/v1", "https://***@example.org/v1"),
        ("https://h/v1?api_key=abc123&model=m&token=zz9", "https://h/v1?api_key=***&model=m&token=***"),
    ],
)
def test_credentials_are_masked_by_their_shape(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The bearer of bad news was late.",
        "authorization failed: check the key",
        "maximum context length is 4096 tokens",
        "see https://example.org/docs?model=gpt&page=2",
        "mail me at someone@example.org",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert scrub(text) == text


def test_scrub_is_idempotent_and_takes_anything():
    once = scrub("Authorization: Bearer abcDEF123456 http://u:p@h/")
    assert scrub(once) == once
    assert scrub(None) == "" and scrub(42) == "42"


def test_register_ignores_values_too_short_to_mask_safely():
    register("ab")
    register("")
    register(None)
    assert scrub("ab abc") == "ab abc"


def test_credentials_in_a_url_are_registered_in_every_form_they_travel_in():
    register_url("http://someone:p%40ss-word-99@127.0.0.1:8000/v1?key=qq-secret-7")
    basic = base64.b64encode(b"someone:p@ss-word-99").decode()
    echoed = f"got p@ss-word-99, p%40ss-word-99, Basic-looking {basic} and qq-secret-7"
    out = scrub(echoed)
    for form in ("p@ss-word-99", "p%40ss-word-99", basic, "qq-secret-7"):
        assert form not in out


def test_redact_url_removes_credentials_and_secret_parameters():
    assert redact_url("http://user:pw@127.0.0.1:8000/v1") == "http://***@127.0.0.1:8000/v1"
    assert redact_url("https://api.example.org/v1?api-key=k1k1k1&region=eu") == (
        "https://api.example.org/v1?api-key=***&region=eu"
    )
    assert redact_url("https://api.openai.com/v1") == "https://api.openai.com/v1"


def test_log_records_are_scrubbed_before_any_handler_formats_them(caplog):
    key = "sk-log-77aa88bb99cc"
    register(key)
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    assert getattr(logging.getLogRecordFactory(), "_polypref_redaction", False)
    caplog.set_level(logging.INFO)
    log = logging.getLogger("some.library")
    log.warning("server said %s", {"authorization": f"Bearer {key}"})
    log.info("HTTP Request: POST %s", "http://u:pw-9988@127.0.0.1/v1/chat/completions")
    try:
        raise RuntimeError(f"echo: {key}")
    except RuntimeError:
        log.exception("request failed")
    assert key not in caplog.text and "pw-9988" not in caplog.text
    assert "request failed" in caplog.text and "RuntimeError: echo: ***" in caplog.text
    assert "http://***@127.0.0.1/v1/chat/completions" in caplog.text
    for record in caplog.records:  # what any other handler (Prefect's API handler) would get
        assert key not in record.getMessage()
