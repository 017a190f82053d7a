"""A refresh whose items need another column type than the folder's shards (a text-only source that gained one
conversation) makes every shard again at one type, from the judgment store: the folder keeps loading."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import load_with_datasets, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, request_kind, serve

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "items"


def _build(config_path: Path, out: Path, server: ChatAPIServer) -> dict:
    return run_without_prefect(pipeline.plan(load_config(config_path, judge_settings(server)), out))


@pytest.mark.parametrize("first", ["text", "messages"])
def test_a_refresh_that_changes_a_columns_type_rebuilds_every_shard_and_loads(tmp_path: Path, first: str) -> None:
    text = (FIXTURES / "pairwise.jsonl").read_text()
    conversation = (FIXTURES / "conversational_prompt.jsonl").read_text().splitlines()[0] + "\n"
    items = tmp_path / "items.jsonl"
    config_path = tmp_path / "build.yaml"
    config_path.write_text(yaml.safe_dump({"seed": 1, "population": {"size": 3}, "items": {"source": str(items)}}))
    out = tmp_path / "out"
    for server in serve(ChatAPIServer(reply=prefer_the_longer)):
        items.write_text(text + conversation if first == "messages" else text)
        before = _build(config_path, out, server)
        asked = sum(request_kind(b) == "judgment" for b in server.bodies)
        items.write_text(text if first == "messages" else text + conversation)
        after = _build(config_path, out, server)
        asked_again = sum(request_kind(b) == "judgment" for b in server.bodies) - asked

    grown = first == "text"
    # the conversation's pairs are the only ones judged anew (none when it was taken away)
    assert after["reused_judgments"] == (before["judgments"] if grown else after["judgments"])
    assert asked_again == (after["judgments"] - before["judgments"] if grown else 0)
    frame = pl.read_parquet(out / "data" / "preferences")
    assert frame.height == after["preferences"]
    assert isinstance(frame.schema["chosen"], pl.List) == grown
    loaded = load_with_datasets(out, "preferences")
    assert loaded.num_rows == after["preferences"]
    row = loaded[0]
    assert isinstance(row["chosen"], list) == grown
    if grown:
        assert all(isinstance(m, dict) and set(m) >= {"role", "content"} for m in row["chosen"])
