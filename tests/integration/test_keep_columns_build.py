"""Issue 25, item 15: ``items.keep_columns`` carries named source columns (ids, metadata) into the preferences,
judgments and pairs configs, and a source's own ``prompt_id`` is kept unasked; ``datasets`` reads them back.
Judged through the OpenAI backend against tests/openai_api.py's real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from polypref.errors import ConfigError
from tests.conftest import load_with_datasets, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

pytestmark = pytest.mark.integration

ROWS = [
    {
        "prompt_id": f"uf-{i}",
        "prompt": f"Question {i}?",
        "chosen": f"A long and careful answer {i}.",
        "rejected": f"No {i}.",
        "source": "forum" if i % 2 else None,
        "meta": {"votes": i, "tags": ["a", "é"]},
    }
    for i in range(3)
]


@pytest.fixture(scope="module")
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=prefer_the_longer))


def _config(tmp_path: Path, rows: list[dict], **items: object) -> Path:
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "population": {"size": 3}, "items": {"source": str(source), **items}}))
    return path


def _expected(row: dict) -> dict:
    meta = json.dumps(row["meta"], ensure_ascii=False)
    return {"meta": meta, "source": row["source"], "prompt_id": row["prompt_id"]}


def test_kept_columns_reach_every_row_of_preferences_judgments_and_pairs(tmp_path, server):
    config = load_config(_config(tmp_path, ROWS, keep_columns=["meta", "source"]), judge_settings(server))
    out = tmp_path / "out"
    run_without_prefect(pipeline.plan(config, out))
    by_prompt = {r["prompt"]: _expected(r) for r in ROWS}
    pairs = load_with_datasets(out, "pairs")
    prompt_of = dict(zip(pairs["prompt_id"], pairs["prompt"], strict=True))  # judgments name the item by id only
    assert sorted(prompt_of.values()) == sorted(by_prompt)
    for name in ("preferences", "judgments", "pairs"):
        rows = load_with_datasets(out, name)
        assert len(rows) > 0
        for prompt_id, kept in zip(rows["prompt_id"], rows["source_columns"], strict=True):
            assert kept == by_prompt[prompt_of[prompt_id]]


def test_a_source_without_kept_columns_publishes_none(tmp_path, server):
    rows = [{k: v for k, v in r.items() if k in ("prompt", "chosen", "rejected")} for r in ROWS]
    out = tmp_path / "out"
    run_without_prefect(pipeline.plan(load_config(_config(tmp_path, rows), judge_settings(server)), out))
    assert "source_columns" not in load_with_datasets(out, "preferences").column_names


def test_a_kept_column_the_source_lacks_is_refused_naming_the_setting(tmp_path, server):
    path = _config(tmp_path, ROWS, keep_columns=["metadata"])
    with pytest.raises(ConfigError, match=r"items.keep_columns: \['metadata'\] is not a column of the source"):
        pipeline.plan(load_config(path, judge_settings(server)), tmp_path / "out")


def test_polypref_rows_keep_an_extra_key_only_when_named(tmp_path, server):
    rows = [
        {"id": f"q{i}", "prompt": f"Q{i}?", "responses": [{"text": f"yes {i}"}, {"text": f"no {i}"}], "batch": i}
        for i in range(2)
    ]
    with pytest.raises(ConfigError, match="batch"):
        pipeline.plan(load_config(_config(tmp_path, rows), judge_settings(server)), tmp_path / "refused")
    config = load_config(_config(tmp_path, rows, keep_columns=["batch", "id"]), judge_settings(server))
    run_without_prefect(pipeline.plan(config, tmp_path / "out"))
    pairs = load_with_datasets(tmp_path / "out", "pairs")
    assert sorted(s["batch"] for s in pairs["source_columns"]) == ["0", "1"]
    # a kept key the format reads is still read: the user's ids stay the items' ids
    assert sorted(pairs["prompt_id"]) == ["q0", "q1"]
    assert sorted(s["id"] for s in pairs["source_columns"]) == ["q0", "q1"]
