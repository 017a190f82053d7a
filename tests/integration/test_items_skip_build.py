"""Issue 25, item 14: a build over a source with bad and repeated rows, ``items.on_error: skip`` and
``items.drop_duplicates``: it judges the good rows, counts the others by reason in the card, lists each in
``.polypref/skipped.jsonl``, and a rerun over a mended source leaves no stale list behind. Judged through the
OpenAI backend against tests/openai_api.py's real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.cli.build import _print_summary
from polypref.config import load_config
from polypref.errors import ConfigError
from tests.conftest import load_with_datasets, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

pytestmark = pytest.mark.integration

GOOD = [{"prompt": f"Question {i}?", "chosen": f"A fine answer {i}.", "rejected": f"No {i}."} for i in range(4)]
LINES = [
    json.dumps(GOOD[0]),
    '{"prompt": "cut off", "chosen": "x"',  # line 2: not JSON
    json.dumps(GOOD[1]),
    json.dumps({**GOOD[2], "rejected": "   "}),  # line 4: a blank response
    json.dumps(GOOD[0]),  # line 5: a repeat of line 1
    json.dumps(GOOD[3]),
]


@pytest.fixture(scope="module")
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=prefer_the_longer))


def _config(tmp_path: Path, lines: list[str], **items: object) -> Path:
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "population": {"size": 4}, "items": {"source": str(source), **items}}))
    return path


def test_a_source_with_bad_rows_is_refused_by_default_naming_the_row(tmp_path, server):
    with pytest.raises(ConfigError, match="line 2: invalid JSON"):
        pipeline.plan(load_config(_config(tmp_path, LINES), judge_settings(server)), tmp_path / "out")


def test_skipped_rows_are_counted_in_the_card_and_listed(tmp_path, server, capsys):
    config = load_config(_config(tmp_path, LINES, on_error="skip", drop_duplicates=True), judge_settings(server))
    out = tmp_path / "out"
    summary = run_without_prefect(pipeline.plan(config, out))
    preferences = load_with_datasets(out, "preferences")
    assert sorted(set(preferences["prompt"])) == sorted(g["prompt"] for g in (GOOD[0], GOOD[1], GOOD[3]))
    listed = [json.loads(line) for line in BuildState(out).skipped_file.read_text().splitlines()]
    source = tmp_path / "pairs.jsonl"
    assert [(r["row"], r["kind"], r["column"]) for r in listed] == [
        (f"{source} line 2", "unreadable", None),
        (f"{source} line 4", "invalid", "rejected"),
        (f"{source} line 5", "duplicate", None),
    ]
    assert "invalid JSON" in listed[0]["reason"] and f"{source} line 1" in listed[2]["reason"]
    card = (out / "README.md").read_text()
    assert "**Source rows left out:** unreadable 1, invalid rejected 1, duplicate 1" in card
    _print_summary(summary, out)
    assert "left out 3 source rows (unreadable 1, invalid rejected 1, duplicate 1)" in capsys.readouterr().out

    mended = load_config(_config(tmp_path, [json.dumps(g) for g in GOOD], on_error="skip"), judge_settings(server))
    run_without_prefect(pipeline.plan(mended, out))
    assert not BuildState(out).skipped_file.exists()  # this run left nothing out: no list of another run's rows
    assert "Source rows left out" not in (out / "README.md").read_text()
