"""Every config a card declares loads, locally and from the Hub (the Hub stub: its API cannot exist offline),
including a build whose `review` config has no rows: a consistent judge (a real OpenAI-compatible server whose
choice does not depend on the order shown) and one persona leave nothing to review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from polypref.dataset.configs import CONFIGS
from polypref.hub import publish
from tests.conftest import load_with_datasets, run_without_prefect
from tests.openai_api import VERDICT, ChatAPIServer, judge_settings, serve

pytestmark = pytest.mark.integration

TOKEN = "hf_write_token_e7c41d"


def _consistent(body: dict) -> tuple[str, str]:
    """A judge with a strict taste (the text that sorts last wins), so both orders of every pair agree."""
    user = body["messages"][-1]["content"]
    first, second = (user.split(f"<<<RESPONSE {s}>>>")[1].split(f"<<<END RESPONSE {s}>>>")[0] for s in "AB")
    return json.dumps({**VERDICT, "choice": "A" if first > second else "B"}), "stop"


def _card(out: Path) -> dict:
    return yaml.safe_load((out / "README.md").read_text().split("---")[1])


def test_a_build_with_an_empty_config_loads_every_config_its_card_declares(tiny_config, tmp_path, hub) -> None:
    import datasets

    out = tmp_path / "out"
    for server in serve(ChatAPIServer(reply=_consistent)):
        config = load_config(tiny_config, ["population.size=1", *judge_settings(server)])
        summary = run_without_prefect(pipeline.plan(config, out))
    assert summary["review"] == 0 and summary["preferences"] > 0

    card = _card(out)
    declared = [c["config_name"] for c in card["configs"]]
    assert declared == [c for c in CONFIGS if c not in ("review", "episodes")]  # episodes: off by default
    assert [c["config_name"] for c in card["dataset_info"]] == declared
    assert "An empty config:** `review` has no rows" in (out / "README.md").read_text()
    for name in declared:
        assert load_with_datasets(out, name).num_rows == summary[name]

    hub.stub.add_token(TOKEN, write=True)
    hub.token(TOKEN)
    repo = "org/empty-review"
    assert publish.push(out, repo, sleep=lambda s: None).tag == "v1"
    for name in declared:
        remote = datasets.load_dataset(repo, name, split="train", revision="v1", cache_dir=str(tmp_path / "c"))
        assert remote.num_rows == summary[name]
