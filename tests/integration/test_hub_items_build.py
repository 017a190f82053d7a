"""Builds whose items come from a Hub dataset, read through huggingface_hub from the local Hub stub.

The stub (tests/hubstub) stands in for the Hub's HTTP API, which cannot exist offline; everything on our side is
real: huggingface_hub's downloads and cache, the source resolution, the judge requests to a real local HTTP
server, the Parquet, and the CLI in a subprocess for the errors users see.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import load_with_datasets, run_polypref, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "items"
TOKEN = "hf_gated_token_5f9a1c7e3b"
README = """---
configs:
- config_name: default
  default: true
  data_files:
  - split: train
    path: data/train-*.parquet
  - split: test
    path: data/test-*.parquet
---
# pairs
"""


def _parquet(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=2)
    return sink.getvalue()


PAIRS = [json.loads(line) for line in (FIXTURES / "pairwise.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=prefer_the_longer))


@pytest.fixture
def repo(hub) -> tuple[str, str]:
    """A pairwise dataset with train and test splits; returns (repo id, sha of tag v1)."""
    repo_id = f"org/pairs-{os.urandom(4).hex()}"
    files = {
        "README.md": README,
        "data/train-00000-of-00001.parquet": _parquet(PAIRS),
        "data/test-00000-of-00001.parquet": _parquet(PAIRS[:2]),
    }
    sha = hub.stub.add_commit(repo_id, files, tags=["v1"])
    return repo_id, sha


def _config(path: Path, items: dict) -> Path:
    path.write_text(yaml.safe_dump({"seed": 2, "population": {"size": 3}, "items": items}))
    return path


def test_a_hub_dataset_is_rejudged_with_its_labels_and_provenance(hub, repo, server, tmp_path: Path) -> None:
    repo_id, sha = repo
    items = {"source": f"hf://datasets/{repo_id}", "revision": "v1", "limit": 3}
    config = load_config(_config(tmp_path / "build.yaml", items), judge_settings(server))
    plan = pipeline.plan(config, tmp_path / "out")
    summary = run_without_prefect(plan)

    source = summary["item_source"]
    assert (source["repo"], source["revision"], source["split"], source["limit"]) == (repo_id, sha, "train", 3)
    assert source["format"] == "pairwise" and len(plan.items) == 3
    prefs = load_with_datasets(tmp_path / "out", "preferences")
    known = {(p["prompt"], p["chosen"], p["rejected"]) for p in PAIRS}
    assert {(r["prompt"], r["chosen"], r["rejected"]) for r in prefs} <= known  # texts as the source had them
    assert prefs.num_rows and all(r["source_label_agrees"] for r in prefs)  # the stand-in prefers the longer
    card = (tmp_path / "out" / "README.md").read_text()
    assert repo_id in card and sha in card and "Agreement with the source's own labels" in card

    # the same limit and seed from another split draws from that split only
    test_items = {**items, "split": "test", "limit": 5}
    test_plan = pipeline.plan(
        load_config(_config(tmp_path / "b2.yaml", test_items), judge_settings(server)), tmp_path / "o2"
    )
    assert sorted(i.prompt for i in test_plan.items) == sorted(p["prompt"] for p in PAIRS[:2])


def _cli(args: list[str], hub, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess:
    """A process: huggingface_hub reads HF_ENDPOINT when it is imported."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(hub.home), "HF_HUB_OFFLINE": "0"}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return run_polypref(*args, cwd=cwd, env=env)


@pytest.mark.process
@pytest.mark.parametrize(
    ("items", "field", "words"),
    [
        ({"source": "hf://datasets/org/no-such-repo"}, "items.source", "not found"),
        ({"revision": "v9"}, "items.revision", "v9"),
        ({"split": "validation"}, "items.split", "train"),
        ({"format": "completions"}, "column completions", "'prompt', 'chosen', 'rejected'"),
        ({"columns": {"prompt": "question"}}, "items.columns.prompt", "'question'"),
        ({"gated": True}, "items.source", "HF_TOKEN"),
    ],
)
def test_bad_hub_sources_exit_2_before_any_work(hub, repo, items, field, words, tmp_path: Path) -> None:
    repo_id, _ = repo
    if items.pop("gated", False):
        hub.stub.set_gated(repo_id, token=TOKEN)
    settings = {"source": f"hf://datasets/{repo_id}", **items}
    config = _config(tmp_path / "build.yaml", settings)
    result = _cli(
        [
            "build",
            str(config),
            "--out",
            "out",
            "--set",
            "judge.backend=openai",
            "--set",
            "judge.model=m",
            "--set",
            "judge.api_key_env=null",
        ],
        hub,
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert field in result.stderr and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.process
def test_a_gated_dataset_reads_with_the_token_and_never_shows_it(hub, repo, server, tmp_path: Path) -> None:
    repo_id, _ = repo
    hub.stub.set_gated(repo_id, token=TOKEN)
    config = _config(tmp_path / "build.yaml", {"source": f"hf://datasets/{repo_id}", "limit": 2})
    settings = [a for s in judge_settings(server) for a in ("--set", s)]
    result = _cli(["build", str(config), "--out", "out", *settings], hub, tmp_path, token=TOKEN)
    assert result.returncode == 0, result.stderr
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and not any(TOKEN.encode() in p.read_bytes() for p in written)
    assert TOKEN not in result.stdout + result.stderr


def _pairs(start: int, n: int) -> list[dict]:
    return [
        {
            "prompt": f"Question {i}: which is better?",
            "chosen": f"A longer answer to question {i}.",
            "rejected": f"No {i}.",
        }
        for i in range(start, start + n)
    ]


def test_a_limited_sample_stays_the_same_when_the_hub_source_grows(hub, server, tmp_path: Path) -> None:
    """items.limit takes the first rows: a refresh after the source grew (a new shard, rows appended to the last)
    judges the same items, so every judgment is reused and the shards are kept as they were."""
    repo_id = f"org/growing-{os.urandom(4).hex()}"
    hub.stub.add_commit(repo_id, {f"data/train-0000{k}.parquet": _parquet(_pairs(k * 40, 40)) for k in range(4)})
    config = load_config(
        _config(tmp_path / "build.yaml", {"source": f"hf://datasets/{repo_id}", "limit": 20}), judge_settings(server)
    )
    first = run_without_prefect(pipeline.plan(config, tmp_path / "out"))
    assert hub.stub.log.count("resolve", "GET") == 1  # the first shard alone holds the first 20 rows
    shards = {p: p.read_bytes() for p in (tmp_path / "out" / "data").rglob("*.parquet")}
    asked = server.requests

    hub.stub.add_commit(
        repo_id,
        {"data/train-00003.parquet": _parquet(_pairs(120, 60)), "data/train-00004.parquet": _parquet(_pairs(180, 40))},
    )
    plan = pipeline.plan(config, tmp_path / "out")
    again = run_without_prefect(plan)
    assert plan.keeps_folder and sorted(i.prompt for i in plan.items) == sorted(p["prompt"] for p in _pairs(0, 20))
    assert server.requests == asked  # nothing judged again
    assert again["reused_judgments"] == again["judgments"] == first["judgments"] > 0
    kept = [p for p in shards if p.parent.name in ("preferences", "judgments", "pairs", "personas")]
    assert kept and all(p.read_bytes() == shards[p] for p in kept)
