"""Users' own data without surprises (issue 25): prompts published once, labels read wherever a source keeps them
(or a loud refusal), A/B-with-winner data, errors naming files and rows, HH-RLHF strings and chat messages as
other tools write them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polypref.config import ItemsConfig
from polypref.errors import ConfigError
from polypref.items import formats, load_items, make_pairs, read_items
from polypref.items.formats import RowError
from polypref.items.sources import check_judgeable
from polypref.population import load_spec
from polypref.records import Item, Message, ResponsePair

FIXTURES = Path(__file__).parents[2] / "fixtures" / "items"
SPEC = load_spec("gss_spending")


def _rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _error(path: Path, **config: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        read_items(ItemsConfig(source=str(path), **config), SPEC)
    return info.value


def _side(item: Item) -> str | None:
    return ResponsePair.of(item, *item.responses[:2]).source_side


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


# ---- 1. the prompt is published once --------------------------------------------------------------------------


def test_a_text_prompt_repeated_as_the_responses_first_turn_is_cut_from_them() -> None:
    """ultrafeedback_binarized: prompt "P", chosen [user P, assistant A]; kept whole, TRL trained on P twice."""
    rows = _rows("ultrafeedback_binarized.jsonl")
    for row, item in zip(rows, load_items(str(FIXTURES / "ultrafeedback_binarized.jsonl"), SPEC), strict=True):
        assert item.prompt == row["prompt"] and item.messages is None
        for response, source in zip(item.responses, (row["chosen"], row["rejected"]), strict=True):
            assert response.messages == (Message(**source[1]),) and response.text == source[1]["content"]
            assert row["prompt"] not in response.text
        assert item.label == item.responses[0].id


def test_the_prompt_is_published_once_as_trl_reads_it() -> None:
    from polypref.dataset.tables import pairs_frame

    items = load_items(str(FIXTURES / "ultrafeedback_binarized.jsonl"), SPEC)
    frame = pairs_frame(make_pairs(items))
    for row, source in zip(frame.iter_rows(named=True), _rows("ultrafeedback_binarized.jsonl"), strict=True):
        assert row["prompt"] == [_user(source["prompt"])]
        assert [row["a_out"], row["b_out"]] == [source["chosen"][1:], source["rejected"][1:]]


def test_a_conversational_prompt_is_cut_from_responses_that_open_with_it() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    prompt = [{"role": "system", "content": "Be brief."}, _user("Q?")]
    row = {"prompt": prompt, "chosen": [*prompt, _assistant("yes")], "rejected": [*prompt, _assistant("no")]}
    item = formats.parse(layout, row, SPEC)
    assert item.messages == tuple(Message(**m) for m in prompt)
    assert [r.messages for r in item.responses] == [(Message("assistant", "yes"),), (Message("assistant", "no"),)]


def test_system_turns_before_a_repeated_text_prompt_become_the_prompts() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    system = {"role": "system", "content": "Be brief."}
    row = {
        "prompt": "Q?",
        "chosen": [system, _user("Q?"), _assistant("a")],
        "rejected": [system, _user("Q?"), _assistant("b")],
    }
    item = formats.parse(layout, row, SPEC)
    assert item.messages == (Message("system", "Be brief."), Message("user", "Q?"))
    assert [r.text for r in item.responses] == ["a", "b"]


@pytest.mark.parametrize(
    ("columns", "row"),
    [
        (["instruction", "completions"], {"instruction": "Q?", "completions": "CONVERSATIONS"}),
        (["prompt", "responses"], {"prompt": "Q?", "responses": "RESPONSES"}),
        (["question", "response_a", "response_b"], {"question": "Q?", "response_a": "A", "response_b": "B"}),
    ],
)
def test_every_format_cuts_the_repeated_prompt(columns: list[str], row: dict[str, Any]) -> None:
    turns = [[_user("Q?"), _assistant(t)] for t in ("a", "b")]
    row = {
        **row,
        **({"completions": turns} if "completions" in row else {}),
        **({"responses": [{"text": t} for t in turns]} if "responses" in row else {}),
        **({"response_a": turns[0], "response_b": turns[1]} if "response_a" in row else {}),
    }
    item = formats.parse(formats.detect("x", columns), row, SPEC)
    assert item.prompt == "Q?" and [r.messages for r in item.responses] == [
        (Message("assistant", "a"),),
        (Message("assistant", "b"),),
    ]


def test_a_response_that_only_repeats_the_prompt_is_refused_naming_it() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    with pytest.raises(RowError) as info:
        formats.parse(layout, {"prompt": "Q?", "chosen": [_user("Q?")], "rejected": "b"}, SPEC)
    assert info.value.column == "chosen" and "repeats the prompt" in info.value.reason


def test_turns_that_do_not_repeat_the_prompt_are_kept() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    chosen = [_user("Something else?"), _assistant("a")]
    item = formats.parse(layout, {"prompt": "Q?", "chosen": chosen, "rejected": [_assistant("b")]}, SPEC)
    assert item.responses[0].messages == tuple(Message(**m) for m in chosen)


# ---- 7. labels are read where UltraFeedback and distilabel keep them, or the source is refused -------------------


def test_real_ultrafeedback_ratings_are_read_from_fine_grained_scores_annotations_and_numeric_texts() -> None:
    first, second = load_items(str(FIXTURES / "ultrafeedback.jsonl"), SPEC)
    assert [r.score for r in first.responses] == [4.5, 2.3333333333]  # fine-grained_score
    # annotations' mean (N/A not counted), and an overall_score given as text
    assert [r.score for r in second.responses] == [4.5, 2.25, 7.5]
    assert [r.model for r in second.responses] == ["writer-a", "writer-b", "writer-c"]
    assert _side(first) == "a" and ResponsePair.of(second, second.responses[0], second.responses[2]).source_side == "b"


def test_distilabel_generations_with_parallel_ratings_and_models() -> None:
    loaded = read_items(ItemsConfig(source=str(FIXTURES / "distilabel.jsonl")), SPEC)
    first, second = loaded.items
    assert loaded.format == "completions" and loaded.columns["completions"] == "generations"
    assert [r.score for r in first.responses] == [5.0, 2.0] and [r.score for r in second.responses] == [4.0, None, 3.0]
    assert [r.model for r in second.responses] == ["writer-a", "writer-b", "writer-c"]  # not the judge's model_name
    assert _side(first) == "a"


def test_items_columns_rating_names_any_key_inside_the_completions(tmp_path: Path) -> None:
    config = {"columns": {"rating": "annotations.helpfulness.Rating"}}
    first, second = read_items(ItemsConfig(source=str(FIXTURES / "ultrafeedback.jsonl"), **config), SPEC).items
    assert [r.score for r in first.responses] == [5.0, 2.0] and [r.score for r in second.responses] == [4.0, 2.0, 4.0]
    missing = _error(FIXTURES / "ultrafeedback.jsonl", columns={"rating": "grade"})
    assert missing.source == "config" and missing.problems[0][0] == "items.columns.rating"
    assert "'grade'" in missing.problems[0][1]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_ratings_that_never_hold_a_value_are_an_error_naming_the_users_key(tmp_path: Path, suffix: str) -> None:
    rows = [
        {"instruction": f"Q{i}?", "completions": [{"response": "a", "overall_score": v}, {"response": "b"}]}
        for i, v in enumerate([None, "N/A"])
    ]
    error = _error(_write(tmp_path / f"items{suffix}", rows))
    field, reason = error.problems[0]
    assert field == "completions.*.overall_score" and "rating" in reason and "items.columns.rating" in reason
    assert "completions.0.score" not in str(error)


def test_a_bad_rating_is_named_by_the_users_key() -> None:
    layout = formats.detect("c", ["instruction", "completions"])
    row = {"instruction": "Q", "completions": [{"response": "a", "overall_score": "high"}, {"response": "b"}]}
    with pytest.raises(RowError) as info:
        formats.parse(layout, row, SPEC)
    assert info.value.column == "completions.0.overall_score" and "'high'" in info.value.reason
    annotated = {"response": "a", "annotations": {"honesty": {"Rating": "lots"}}}
    with pytest.raises(RowError) as info:
        formats.parse(layout, {"instruction": "Q", "completions": [annotated, "b"]}, SPEC)
    assert info.value.column == "completions.0.annotations.honesty.Rating"


def test_parallel_ratings_of_the_wrong_length_name_the_column() -> None:
    layout = formats.detect("d", ["instruction", "generations", "ratings"])
    with pytest.raises(RowError) as info:
        formats.parse(layout, {"instruction": "Q", "generations": ["a", "b"], "ratings": [1]}, SPEC)
    assert info.value.column == "ratings" and "one per completion" in info.value.reason


def test_completions_without_any_rating_are_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [{"instruction": "Q?", "completions": [{"response": "a", "grade": "A"}, {"response": "b", "grade": "C"}]}]
    with caplog.at_level(logging.WARNING, logger="polypref.items"):
        (item,) = load_items(str(_write(tmp_path / "items.jsonl", rows)), SPEC)
    assert _side(item) is None
    assert "no rating found" in caplog.text and "items.columns.rating" in caplog.text


# ---- 8. A/B data with a winner ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_arena_rows_are_pairs_labelled_by_their_winner(tmp_path: Path, suffix: str) -> None:
    rows = _rows("arena.jsonl")
    loaded = read_items(ItemsConfig(source=str(_write(tmp_path / f"arena{suffix}", rows))), SPEC)
    assert loaded.format == "arena" and len(loaded.items) == len(rows)
    for row, item in zip(rows, loaded.items, strict=True):
        assert item.prompt == row["question"]
        assert [(r.text, r.model) for r in item.responses] == [
            (row["response_a"], row["model_a"]),
            (row["response_b"], row["model_b"]),
        ]
        assert _side(item) == {"model_a": "a", "model_b": "b"}.get(row["winner"])


@pytest.mark.parametrize(
    ("winner", "side"), [("model_a", "a"), ("A", "a"), ("b", "b"), (" Model_B ", "b"), ("tie", None), (None, None)]
)
def test_winner_values(winner: str | None, side: str | None) -> None:
    layout = formats.detect("a", ["question", "response_a", "response_b", "winner"])
    item = formats.parse(layout, {"question": "Q", "response_a": "x", "response_b": "y", "winner": winner}, SPEC)
    assert [r.text for r in item.responses] == ["x", "y"] and _side(item) == side


def test_an_unknown_winner_is_refused_naming_the_column_and_the_columns_not_read(tmp_path: Path) -> None:
    rows = [{"question": "Q", "response_a": "x", "response_b": "y", "winner": "left", "judge": "j", "turn": 1}]
    error = _error(_write(tmp_path / "arena.jsonl", rows))
    assert error.problems[0][0] == "line 1: winner" and "'left'" in error.problems[0][1]
    assert error.problems[-1][0] == "columns not read" and "['judge', 'turn']" in error.problems[-1][1]


def test_arena_conversations_without_a_prompt_share_their_opening() -> None:
    layout = formats.detect("a", ["conversation_a", "conversation_b", "winner", "model_a", "model_b"])
    row = {
        "conversation_a": [_user("Q?"), _assistant("x")],
        "conversation_b": [_user("Q?"), _assistant("y")],
        "winner": "model_b",
        "model_a": "m1",
        "model_b": "m2",
    }
    item = formats.parse(layout, row, SPEC)
    assert item.messages == (Message("user", "Q?"),) and [r.text for r in item.responses] == ["x", "y"]
    assert _side(item) == "b"


def test_winners_that_are_all_null_are_an_error(tmp_path: Path) -> None:
    rows = [{"question": f"Q{i}", "response_a": "x", "response_b": "y", "winner": None} for i in range(2)]
    assert _error(_write(tmp_path / "arena.jsonl", rows)).problems[0][0] == "winner"


def test_a_prompts_only_error_lists_the_columns_not_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "items.jsonl", [{"prompt": "Q", "answer_1": "x", "answer_2": "y"}])
    with pytest.raises(ConfigError) as info:
        check_judgeable(load_items(str(path), SPEC), "openai", str(path))
    assert info.value.problems[-1][0] == "columns not read" and "['answer_1', 'answer_2']" in info.value.problems[-1][1]


# ---- 11. errors name the file and row, not a content hash ----------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_judgeability_errors_name_the_file_and_row(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"items{suffix}", _rows("pairwise.jsonl"))
    items = load_items(str(path), SPEC)
    with pytest.raises(ConfigError) as info:
        check_judgeable(items, "simulated", str(path))
    where = "line 1" if suffix == ".jsonl" else "row 0"
    assert info.value.problems[0][0] == f"item at {path} {where}"
    assert all(item.id not in str(info.value) for item in items)
    bare = load_items(str(_write(tmp_path / f"prompts{suffix}", [{"prompt": "A"}, {"prompt": "B"}])), SPEC)
    with pytest.raises(ConfigError) as info:
        check_judgeable(bare, "openai", "prompts")
    assert info.value.problems[0][0].startswith(f"item at {tmp_path / 'prompts'}")


def test_repeated_items_without_ids_are_named_by_their_rows_not_their_hash(tmp_path: Path) -> None:
    rows = [{"prompt": "Q", "chosen": "a", "rejected": "b"}, {"prompt": "R", "chosen": "a", "rejected": "b"}]
    path = _write(tmp_path / "items.jsonl", [*rows, rows[0]])
    error = _error(path)
    assert error.problems[0][0] == "line 1: id" and "line 3" in error.problems[0][1]
    (item,) = load_items(str(_write(tmp_path / "one.jsonl", rows[:1])), SPEC)
    assert item.id not in str(error)


# ---- 13. HH-RLHF strings and chat messages as other tools write them -------------------------------------------


def test_hh_rlhf_strings_become_the_shared_conversation_and_the_last_answers() -> None:
    items = load_items(str(FIXTURES / "hh_rlhf.jsonl"), SPEC)
    long, short = items
    assert [m.role for m in long.messages or ()] == ["user", "assistant", "user"]
    assert long.messages[0].content == "My town wants to cut library hours."  # type: ignore[index]
    assert [r.messages for r in long.responses][1] == (Message("assistant", "Yes."),)
    assert short.messages == (Message("user", "Should parks get more money?"),)
    assert long.label == long.responses[0].id and all("Human:" not in r.text for i in items for r in i.responses)


@pytest.mark.parametrize("prompt", ["\n\nHuman: Q?\n\nAssistant:", "Human: Q?\n\nAssistant:"])
def test_an_hh_prompt_ending_with_the_assistants_turn_is_its_conversation(prompt: str) -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    item = formats.parse(layout, {"prompt": prompt, "chosen": " a", "rejected": " b"}, SPEC)
    assert item.messages == (Message("user", "Q?"),) and [r.text for r in item.responses] == [" a", " b"]


def test_an_hh_string_with_an_empty_answer_is_refused_naming_the_column() -> None:
    layout = formats.detect("p", ["chosen", "rejected"])
    row = {"chosen": "\n\nHuman: Q?\n\nAssistant: a", "rejected": "\n\nHuman: Q?\n\nAssistant:"}
    with pytest.raises(RowError) as info:
        formats.parse(layout, row, SPEC)
    assert info.value.column == "rejected" and "message 1: content" in info.value.reason


def test_content_parts_are_joined_and_extra_message_keys_dropped() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    parts = [{"type": "text", "text": "Q"}, {"type": "text", "text": "?"}]
    row = {
        "prompt": [{"role": "user", "content": parts, "name": "ann"}],
        "chosen": [{"role": "assistant", "content": "a", "weight": 1, "tool_calls": None}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "b"}]}],
    }
    item = formats.parse(layout, row, SPEC)
    assert item.messages == (Message("user", "Q?"),) and [r.text for r in item.responses] == ["a", "b"]


def test_a_content_part_that_is_not_text_is_refused_naming_the_column() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(RowError) as info:
        formats.parse(layout, {"prompt": image, "chosen": "a", "rejected": "b"}, SPEC)
    assert info.value.column == "prompt" and "not a text part" in info.value.reason
