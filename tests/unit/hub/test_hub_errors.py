"""The one table of huggingface_hub's errors (items/hub_errors.py): the same exception says what to do for a read
of items (a ConfigError's field and reason) and for a push (a PublishError), and no reason shows a token."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from polypref.errors import ConfigError, http_status
from polypref.hub import publish
from polypref.items.hub import hub_errors
from polypref.items.hub_errors import Request, hub_problem, is_hub_error
from polypref.safety import secrets

TOKEN = "hf_tableTestSecretToken123"


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "http://hub.test/api/datasets/org/data"))


def _http(status: int, kind: type[HfHubHTTPError] = HfHubHTTPError, message: str = "") -> HfHubHTTPError:
    return kind(message or f"{status} Client Error", response=_response(status))


@pytest.fixture(autouse=True)
def _endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://hub.test")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    secrets.register(TOKEN)


@pytest.mark.parametrize(
    ("error", "about", "reading", "writing"),
    [
        (_http(401), "repo", "refused the token in HF_TOKEN (invalid credentials): set a valid one", "write access"),
        (_http(403), "repo", "answered HTTP 403 for dataset org/data", "the token cannot write to this repo"),
        (_http(429), "repo", "answered HTTP 429", "rate-limits commits"),
        (_http(503), "repo", "answered HTTP 503", "push again to resume"),
        (_http(404, RepositoryNotFoundError), "repo", "or HF_TOKEN cannot read it", "check the repo id"),
        (_http(403, GatedRepoError), "repo", "has not been granted access", "the token cannot write to this repo"),
        (_http(404, RevisionNotFoundError), "revision", "revision 'dev' not found", "check the repo id and revision"),
        (httpx2.ConnectError("refused"), "repo", "set HF_HUB_OFFLINE=1", "check the network and HF_ENDPOINT"),
    ],
)
def test_one_table_words_an_error_for_a_read_and_for_a_push(error, about, reading, writing, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "list_repo_refs", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    read = hub_problem(error, Request("org/data", "dev"))
    push = hub_problem(error, Request("org/data", "dev", writing=True))
    assert read is not None and push is not None and is_hub_error(error)
    assert read.about == about and reading in read.reason, read.reason
    assert writing in push.reason, push.reason
    assert read.status == push.status == http_status(error)


def test_the_items_side_raises_a_config_error_naming_its_field(monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "list_repo_refs", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(ConfigError) as caught, hub_errors("org/data", "v9"):
        raise _http(404, RevisionNotFoundError)
    assert caught.value.problems == [("items.revision", "revision 'v9' not found in dataset org/data")]
    with pytest.raises(ValueError, match="not the Hub's"), hub_errors("org/data", None):
        raise ValueError("not the Hub's")  # anything else is the caller's


def test_the_push_side_raises_a_publish_error_with_the_status_and_no_token():
    with pytest.raises(publish.PublishError) as caught, publish._hub_errors("org/data", "main"):
        raise _http(503, message=f"503 Server Error for {TOKEN}")
    message = str(caught.value)
    assert message.startswith("pushing to org/data failed (503): ") and "push again to resume" in message
    assert TOKEN not in message and secrets.MASK in message


def test_offline_mode_is_worded_for_each(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    error = OfflineModeIsEnabled("offline")
    read = hub_problem(error, Request("org/data", None, "data/a.jsonl"))
    push = hub_problem(error, Request("org/data", writing=True))
    assert read is not None and "does not hold org/data data/a.jsonl" in read.reason
    assert push is not None and "unset HF_HUB_OFFLINE to push" in push.reason
