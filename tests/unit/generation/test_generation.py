"""Response generation for prompts-only items, against a real OpenAI-compatible HTTP server on 127.0.0.1.

``ChatAPIServer`` (tests/openai_api.py) answers in free text through ``reply``; everything on our side is the real
code: the openai client, the judge's transport with its retries, the generation loop and the Parquet store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import polars as pl
import pytest
from pydantic import ValidationError

from polypref import interrupt
from polypref.errors import Interrupted, JudgeFatalError
from polypref.generation import (
    STORE_COLUMNS,
    GenerateConfig,
    GenerationError,
    check_environment,
    generate,
    identical_texts,
    load_store,
    plan_slots,
    request_seed,
)
from polypref.items.pairing import make_pairs
from polypref.records import Item, Message, content_hash
from tests.openai_api import ChatAPIServer, serve

SEED = 5
ITEMS = tuple(Item(id=f"p{i}", topic=None, prompt=f"Prompt number {i}?", responses=()) for i in range(5))


def echo(body: dict) -> tuple[str, str]:
    """A free-text answer that says which model, seed and prompt it answers."""
    return f"{body['model']} #{body['seed']}: {body['messages'][-1]['content']}", "stop"


@pytest.fixture
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=echo))


def settings(server: ChatAPIServer, n: int = 2, models: tuple[str, ...] = ("gen-a",), **changes: object) -> dict:
    generator = {
        "backend": "openai",
        "base_url": server.base_url,
        "api_key_env": None,
        "micro_batch": 4,
        "concurrency": 4,
        "max_retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
    }
    return {"n": n, "generators": [{**generator, "model": m, **changes} for m in models]}


def config(server: ChatAPIServer, n: int = 2, models: tuple[str, ...] = ("gen-a",), **changes: object):
    return GenerateConfig.model_validate(settings(server, n, models, **changes))


def test_a_retried_request_counts_in_the_slots_attempts(tmp_path):
    throttled = ChatAPIServer(reply=echo, throttle=3, retry_after="0")  # the first three requests: 429
    for _ in serve(throttled):
        generate(ITEMS, config(throttled, n=2), SEED, tmp_path / "store")
    saved = load_store(tmp_path / "store")
    assert throttled.requests == 10 + 3 and saved["error"].null_count() == 10
    assert saved["attempts"].sum() == throttled.requests  # every request made is counted, the refused ones too
    assert sorted(saved["attempts"].to_list())[-1] >= 2


def test_slots_have_final_ids_before_generation(server):
    cfg = config(server, n=3, models=("gen-a", "gen-b"))
    planned = plan_slots(ITEMS, cfg)
    for item, plain in zip(planned, ITEMS, strict=True):
        assert [r.model for r in item.responses] == ["gen-a"] * 3 + ["gen-b"] * 3
        assert [r.id for r in item.responses] == [
            content_hash(plain.id, m, g, i) for g, m in enumerate(("gen-a", "gen-b")) for i in range(3)
        ]
        assert all(r.text == "" for r in item.responses) and item.prompt == plain.prompt
    assert len({r.id for item in planned for r in item.responses}) == 5 * 6
    assert plan_slots(planned, cfg) == planned  # idempotent: planned items may be passed on
    # operational settings do not move ids; the same model twice still gets distinct slots
    assert plan_slots(ITEMS, config(server, n=3, models=("gen-a", "gen-b"), concurrency=9)) == planned
    twice = plan_slots(ITEMS[:1], config(server, n=1, models=("gen-a", "gen-a")))[0].responses
    assert twice[0].id != twice[1].id
    with pytest.raises(ValueError, match="has responses of its own"):
        plan_slots([planned[0]], config(server, n=2, models=("gen-a",)))


def test_n_responses_per_generator_with_their_models(server, tmp_path):
    cfg = config(server, n=2, models=("gen-a", "gen-b"))
    filled = generate(ITEMS, cfg, SEED, tmp_path / "store")

    assert server.requests == 5 * 2 * 2
    planned = plan_slots(ITEMS, cfg)
    assert [[r.id for r in i.responses] for i in filled] == [[r.id for r in i.responses] for i in planned]
    assert [p.id for p in make_pairs(filled)] == [p.id for p in make_pairs(planned)]  # pairs planned before
    for item in filled:
        for k, response in enumerate(item.responses):
            seed = request_seed(SEED, response.id, 0)
            assert response.text == f"{response.model} #{seed}: {item.prompt}"
            assert response.model == ("gen-a" if k < 2 else "gen-b") and response.stance is None
    bodies = server.bodies
    assert len({b["seed"] for b in bodies}) == len(bodies)  # every slot its own seed
    assert all(b["messages"] == [{"role": "user", "content": b["messages"][0]["content"]}] for b in bodies)
    assert not any("response_format" in b or "logprobs" in b for b in bodies)  # free text
    assert {(b["temperature"], b["max_tokens"]) for b in bodies} == {(1.0, 1024)}

    saved = load_store(tmp_path / "store")
    assert saved.schema == pl.Schema(STORE_COLUMNS) and saved.height == 20
    assert saved["error"].null_count() == 20 and (saved["finish_reason"] == "stop").all()
    assert (saved["completion_tokens"] == 20).all() and (saved["attempts"] == 1).all()
    by_id = dict(zip(saved["response_id"], saved["text"], strict=True))
    assert all(by_id[r.id] == r.text for item in filled for r in item.responses)
    assert sorted(saved["model"].unique()) == ["gen-a", "gen-b"]


def test_a_conversational_prompt_is_sent_as_its_messages(server, tmp_path):
    turns = (
        Message("system", "Answer briefly."),
        Message("user", "I want to plant a garden."),
        Message("assistant", "What climate do you live in?"),
        Message("user", "A cold one."),
    )
    item = Item(id="chat", topic=None, prompt="flattened", responses=(), messages=turns)
    filled = generate([item], config(server, n=1), SEED, tmp_path / "store")
    assert [b["messages"] for b in server.bodies] == [[{"role": m.role, "content": m.content} for m in turns]]
    assert filled[0].responses[0].text.endswith(": A cold one.")


def test_a_rerun_after_the_server_went_down_asks_only_for_what_is_missing(server, tmp_path):
    store = tmp_path / "store"
    cfg = config(server)  # 10 slots in micro-batches of 4
    server.fail_after = 4  # the first micro-batch is answered, then the server is down
    with pytest.raises(GenerationError) as failure:
        generate(ITEMS, cfg, SEED, store)
    message = str(failure.value)
    assert "6 of 10 responses could not be generated (6 no_answer)" in message
    assert "rerun the same command to generate exactly the 6 that failed" in message and str(store) in message
    assert failure.value.failed == {"no_answer": 6}
    saved = load_store(store)
    usable = saved.filter(pl.col("error").is_null())
    assert usable.height == 4 and saved.height == 10  # failures are kept for diagnosis, not reused
    assert saved.filter(pl.col("error").is_not_null())["error"].str.starts_with("no_answer: HTTP 503").all()

    server.fail_after = None  # back up
    before = server.requests
    filled = generate(ITEMS, cfg, SEED, store)
    asked = server.bodies[before:]
    assert len(asked) == 6
    texts = {r.id: r.text for item in filled for r in item.responses}
    assert all(texts[i] == t for i, t in zip(usable["response_id"], usable["text"], strict=True))  # reused
    failed_ids = set(saved.filter(pl.col("error").is_not_null())["response_id"])
    assert {b["seed"] for b in asked} == {request_seed(SEED, i, 0) for i in failed_ids}  # same requests again

    before = server.requests
    assert generate(ITEMS, cfg, SEED, store) == filled and server.requests == before  # nothing left to ask


def test_ctrl_c_stops_after_saving_the_micro_batch_in_flight(tmp_path):
    def stop_on_first(body: dict) -> tuple[str, str]:
        interrupt.request_stop("SIGINT")
        return echo(body)

    store = tmp_path / "store"
    try:
        for server in serve(ChatAPIServer(reply=stop_on_first)):
            with pytest.raises(Interrupted):
                generate(ITEMS, config(server), SEED, store)
            assert server.requests == 4
    finally:
        interrupt.reset()
    assert load_store(store)["error"].null_count() == 4
    for server in serve(ChatAPIServer(reply=echo)):  # another port: base_url does not decide texts
        filled = generate(ITEMS, config(server), SEED, store)
        assert server.requests == 6 and all(r.text for item in filled for r in item.responses)


def test_empty_and_truncated_outputs_are_asked_again_then_fail(tmp_path):
    asked: dict[str, int] = {}

    def flaky(body: dict) -> tuple[str | None, str]:
        prompt = body["messages"][-1]["content"]
        asked[prompt] = asked.get(prompt, 0) + 1
        if prompt == "Prompt number 0?":
            return "and so on and so on and", "length"  # never finishes
        if prompt == "Prompt number 1?" and asked[prompt] <= 2:
            return "  \u200b ", "stop"  # both slots' first answers are blank
        return echo(body)

    store = tmp_path / "store"
    for server in serve(ChatAPIServer(reply=flaky)):
        cfg = config(server, max_invalid_retries=2)
        with pytest.raises(GenerationError) as failure:
            generate(ITEMS, cfg, SEED, store)
        assert failure.value.failed == {"truncated": 2} and "(2 truncated)" in str(failure.value)
        assert asked["Prompt number 0?"] == 2 * 3 and asked["Prompt number 1?"] == 2 * 2
        saved = load_store(store)
        cut = saved.filter(pl.col("error").is_not_null())
        assert cut.height == 2 and (cut["attempts"] == 3).all() and (cut["finish_reason"] == "length").all()
        assert (cut["text"] == "and so on and so on and").all()  # the last output, kept for diagnosis
        blank_first = saved.filter(pl.col("item_id") == "p1")
        assert (blank_first["attempts"] == 2).all() and (blank_first["completion_tokens"] == 40).all()
        assert blank_first["error"].null_count() == 2

        server.reply = echo
        before = server.requests
        filled = generate(ITEMS, cfg, SEED, store)
        seeds = {b["seed"] for b in server.bodies[before:]}
        # a seeded model would only repeat itself: the rerun goes on with the next attempts' seeds
        assert seeds == {request_seed(SEED, i, 3) for i in cut["response_id"]}
        assert all(r.text for item in filled for r in item.responses)
    final = load_store(store).filter(
        pl.col("response_id").is_in(cut["response_id"].implode()) & pl.col("error").is_null()
    )
    assert (final["attempts"] == 4).all() and (final["completion_tokens"] == 4 * 20).all()


def test_a_setup_error_stops_at_once_and_names_the_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYPREF_GEN_KEY", "sk-gen-secret-4f1a9c")
    store = tmp_path / "store"
    for server in serve(ChatAPIServer(status=401, reply=echo)):
        cfg = config(server, models=("gen-a", "gen-b"), api_key_env="POLYPREF_GEN_KEY")
        with pytest.raises(JudgeFatalError) as fatal:
            generate(ITEMS, cfg, SEED, store)
        assert "answered HTTP 401" in str(fatal.value) and "generate.generators.0.api_key_env" in str(fatal.value)
        assert "sk-gen-secret" not in str(fatal.value) and server.requests <= 4
    assert load_store(store).height == 0
    monkeypatch.delenv("POLYPREF_GEN_KEY")
    assert [field for field, _ in check_environment(cfg)] == [
        "generate.generators.0.api_key_env",
        "generate.generators.1.api_key_env",
    ]


def test_settings_that_decide_texts_regenerate_and_the_others_do_not(server, tmp_path):
    store = tmp_path / "store"
    first = generate(ITEMS, config(server), SEED, store)
    before = server.requests
    faster = config(server, micro_batch=3, concurrency=2, max_retries=5, timeout_s=30, max_invalid_retries=0)
    assert generate(ITEMS, faster, SEED, store) == first and server.requests == before
    hotter = generate(ITEMS, config(server, temperature=1.3), SEED, store)
    assert server.requests == before + 10 and [i.id for i in hotter] == [i.id for i in first]
    assert {b["temperature"] for b in server.bodies[before:]} == {1.3}
    generate(ITEMS, config(server), SEED + 1, store)  # another build seed: other samples
    assert server.requests == before + 20
    edited = (replace(ITEMS[0], prompt="Prompt number 0, edited?"), *ITEMS[1:])  # same id, another prompt
    assert generate(edited, config(server), SEED, store)[0].responses[0].text.endswith("edited?")
    assert server.requests == before + 22


def test_identical_texts_within_a_prompt_are_kept_and_reported(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "polypref.generation")
    for server in serve(ChatAPIServer(reply=lambda body: ("The same answer.", "stop"))):
        filled = generate(ITEMS, config(server), SEED, tmp_path / "store")
    assert all(len(item.responses) == 2 for item in filled) and identical_texts(filled) == 5
    assert all(a.id != b.id for a, b in (item.responses for item in filled))
    assert "5 generated responses repeat another response's text" in caplog.text


def test_config_validation(server):
    ok = GenerateConfig.model_validate(settings(server, n=1, temperature=0))
    assert ok.generators[0].mode == "text"
    dumped = ok.model_dump()["generators"][0]
    assert not {"samples", "allow_ties", "response_format", "logprobs"} & set(dumped)

    def problems(raw: dict) -> str:
        with pytest.raises(ValidationError) as e:
            GenerateConfig.model_validate(raw)
        return str(e.value)

    assert "generators.0.temperature: n > 1 needs temperature > 0" in problems(settings(server, n=2, temperature=0))
    assert "samples: a judge setting" in problems(settings(server, samples=3))
    assert "response_format: a judge setting" in problems(settings(server, response_format="json_object"))
    assert "Input should be 'text'" in problems(settings(server, mode="verdict"))
    assert "discriminator 'backend'" in problems({"generators": [{"model": "m"}]})
    assert "at least 1 item" in problems({"generators": []})
    assert "greater than or equal to 1" in problems(settings(server, n=0))
    vllm = GenerateConfig.model_validate({"generators": [{"backend": "vllm", "model": "/models/x"}]})
    assert vllm.generators[0].temperature == 1.0 and "structured_outputs_backend" not in vllm.model_dump()
    assert "structured_outputs_backend: a judge setting" in problems(
        {"generators": [{"backend": "vllm", "model": "x", "structured_outputs_backend": "guidance"}]}
    )
