"""A fleet of OpenAI-compatible endpoints (judge.base_url as a list, e.g. one vLLM server per GPU), and endpoints
that keep a rate limit: real HTTP servers on 127.0.0.1, the real client, judge, pipeline and writers. The fleet
builds the dataset one endpoint builds, spreads requests by free slots, and publishes no endpoint's credentials;
against rate-limited endpoints the judge paces itself by their headers instead of running into 429s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.errors import ConfigError
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

pytestmark = pytest.mark.integration

RUN_COLUMNS = ("run_id", "created_at")
TOKEN = "tok-fleet-3b9d0c6e51"


@pytest.fixture
def fleet() -> Iterator[tuple[ChatAPIServer, ChatAPIServer]]:
    # the second endpoint answers slower, as a busier GPU does
    for fast in serve(ChatAPIServer(reply=prefer_the_longer)):
        for slow in serve(ChatAPIServer(reply=prefer_the_longer, delay=0.05)):
            yield fast, slow


def _build(tiny_config: Path, out: Path, base_url: str, *settings: str) -> dict:
    plan = pipeline.plan(load_config(tiny_config, [*_settings(base_url), *settings]), out)
    return run_without_prefect(plan)


def _settings(base_url: str) -> list[str]:
    return [
        *judge_settings(base_url),
        "judge.concurrency=2",
        "judge.max_concurrency=4",
        "judge.micro_batch=8",
        "population.size=8",
    ]


def _rows(out: Path, config: str) -> pl.DataFrame:
    frame = pl.read_parquet(out / "data" / config).drop(RUN_COLUMNS, strict=False)
    return frame.sort(frame.columns[:4])


def test_a_fleet_builds_what_one_endpoint_builds_and_spreads_the_work(
    fleet: tuple[ChatAPIServer, ChatAPIServer], tiny_config: Path, tmp_path: Path
) -> None:
    fast, slow = fleet
    alone = _build(tiny_config, tmp_path / "alone", fast.base_url)
    asked_alone = fast.requests
    secret_url = f"http://judge:{TOKEN}@127.0.0.1:{slow.port}/v1"
    together = _build(tiny_config, tmp_path / "fleet", f"[{fast.base_url}, {secret_url}]")

    assert together["judgments"] == alone["judgments"] and together["preferences"] == alone["preferences"]
    for config in ("judgments", "preferences"):
        assert _rows(tmp_path / "fleet", config).equals(_rows(tmp_path / "alone", config)), config
    from_fast, from_slow = fast.requests - asked_alone, slow.requests
    assert from_fast + from_slow == asked_alone  # every request once, on one endpoint or the other
    assert from_slow > 0 and from_fast > from_slow  # both worked; the faster endpoint took more
    published = [p for p in (tmp_path / "fleet").rglob("*") if p.is_file()]
    assert published and not any(TOKEN.encode() in p.read_bytes() for p in published)
    assert f"http://***@127.0.0.1:{slow.port}/v1" in (tmp_path / "fleet" / "README.md").read_text()


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [("[]", "at least one endpoint"), ("[http://a/v1, http://a/v1]", "listed twice"), ("['']", "empty")],
)
def test_a_bad_endpoint_list_is_refused_naming_the_field(tiny_config: Path, base_url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"judge\.base_url.*{reason}"):
        load_config(tiny_config, _settings(base_url))


def test_the_batch_api_takes_one_endpoint(tiny_config: Path) -> None:
    with pytest.raises(ConfigError, match="batch_api"):
        load_config(tiny_config, [*_settings("[http://a/v1, http://b/v1]"), "judge.batch_api=true"])


def test_rate_limited_endpoints_are_paced_by_their_headers_not_run_into(tiny_config: Path, tmp_path: Path) -> None:
    for first in serve(ChatAPIServer(reply=prefer_the_longer, rpm=600)):  # 10 requests/s, 10 at most at once
        for second in serve(ChatAPIServer(reply=prefer_the_longer, rpm=600)):
            summary = _build(tiny_config, tmp_path / "out", f"[{first.base_url}, {second.base_url}]")
            answered = len(first.answered_at) + len(second.answered_at)
            refused = first.refused + second.refused
            # every judgment answered, and the persona-free run's (every pair in both orders)
            assert answered == summary["judgments"] + 2 * summary["pairs"] and "no_answer" not in summary["errors"]
            assert len(first.answered_at) > 0 and len(second.answered_at) > 0
            assert refused <= 0.05 * (answered + refused), (refused, answered)


def test_a_known_limit_of_a_server_that_announces_none_is_paced_under_not_run_into(
    tiny_config: Path, tmp_path: Path
) -> None:
    """vLLM's server and most gateways send no x-ratelimit-* headers: told the limit, the judge spaces its
    requests under it (here 50 requests/s, against a concurrency that could send four times that at once)."""
    for server in serve(ChatAPIServer(reply=prefer_the_longer, rpm=3000, rate_headers=False)):
        known = ["judge.max_requests_per_minute=3000", "judge.concurrency=16", "judge.max_concurrency=64"]
        summary = _build(tiny_config, tmp_path / "out", server.base_url, *known)
        answered = len(server.answered_at)
        assert answered == summary["judgments"] + 2 * summary["pairs"] and "no_answer" not in summary["errors"]
        assert server.refused <= 0.01 * (answered + server.refused), (server.refused, answered)
        span = server.answered_at[-1] - server.answered_at[0]
        assert answered / span <= 50 * 1.05, answered / span  # paced, not sent at once and refused
