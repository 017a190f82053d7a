"""Item formats: detection from columns, column mapping, conversion of each format, and errors naming the column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypref.errors import ConfigError
from polypref.items import formats
from polypref.items.formats import RowError
from polypref.population import load_spec
from polypref.records import Message, ResponsePair

FIXTURES = Path(__file__).parents[2] / "fixtures" / "items"
SPEC = load_spec("gss_spending")


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("pairwise.jsonl", "pairwise"),
        ("completions.jsonl", "completions"),
        ("conversational.jsonl", "pairwise"),
        ("conversational_prompt.jsonl", "pairwise"),
        ("prompts.jsonl", "prompts"),
        ("open_polypref.jsonl", "polypref"),
    ],
)
def test_the_format_is_told_from_the_columns(fixture: str, expected: str) -> None:
    columns = sorted({key for row in _rows(fixture) for key in row})
    assert formats.detect(fixture, columns).name == expected


def test_pairwise_keeps_texts_byte_exact_and_the_source_label() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected", "topic"])
    for row in _rows("pairwise.jsonl"):
        item = formats.parse(layout, row, SPEC)
        chosen, rejected = item.responses
        assert (item.prompt, chosen.text, rejected.text) == (row["prompt"], row["chosen"], row["rejected"])
        assert item.topic == row.get("topic")
        assert item.label == chosen.id != rejected.id
        pair = ResponsePair.of(item, chosen, rejected)
        assert pair.source_side == "a" and ResponsePair.of(item, rejected, chosen).source_side == "b"
        assert not item.annotated  # no stances: only LLM judges can judge it


def test_completions_read_texts_models_and_ratings_or_plain_strings() -> None:
    layout = formats.detect("c", ["instruction", "completions"])
    first, _, plain = (formats.parse(layout, row, SPEC) for row in _rows("completions.jsonl"))
    assert [r.model for r in first.responses] == ["writer-a", "writer-b", "writer-c"]
    assert [r.score for r in first.responses] == [7.5, 2.0, 8.0]
    a, b, c = first.responses
    assert ResponsePair.of(first, a, b).source_side == "a" and ResponsePair.of(first, a, c).source_side == "b"
    assert [r.text for r in plain.responses] == _rows("completions.jsonl")[2]["completions"]
    assert ResponsePair.of(plain, *plain.responses[:2]).source_side is None  # no ratings, no source preference


def test_conversations_without_a_prompt_column_share_their_opening_turns() -> None:
    layout = formats.detect("v", ["chosen", "rejected"])
    row = _rows("conversational.jsonl")[0]
    item = formats.parse(layout, row, SPEC)
    assert item.messages == tuple(Message(**m) for m in row["chosen"][:3])
    chosen, rejected = item.responses
    assert chosen.messages == (Message(**row["chosen"][3]),) and rejected.messages == (Message(**row["rejected"][3]),)
    assert chosen.text == row["chosen"][3]["content"]  # the judge reads the new turn's content


def test_an_explicit_conversational_prompt_is_kept_as_messages() -> None:
    layout = formats.detect("v", ["prompt", "chosen", "rejected", "topic"])
    item = formats.parse(layout, _rows("conversational_prompt.jsonl")[1], SPEC)
    assert [m.role for m in item.messages or ()] == ["user", "assistant", "user"]


def test_a_column_mapping_reads_other_spellings() -> None:
    row = {"question": "Q?", "response_a": "yes", "response_b": "no", "other": 1}
    mapping = {"prompt": "question", "chosen": "response_a", "rejected": "response_b"}
    layout = formats.detect("m", list(row), "auto", mapping)
    item = formats.parse(layout, row, SPEC)
    assert layout.name == "pairwise" and [r.text for r in item.responses] == ["yes", "no"]


def test_a_missing_column_names_it_and_the_columns_found() -> None:
    with pytest.raises(ConfigError) as info:
        formats.detect("src.parquet", ["prompt", "chosen"], "pairwise")
    field, reason = info.value.problems[0]
    assert field == "column rejected" and "['prompt', 'chosen']" in reason and info.value.source == "src.parquet"


def test_columns_that_fit_no_format_are_refused_with_the_columns_listed() -> None:
    with pytest.raises(ConfigError, match=r"cannot tell the format from the columns \['text', 'label'\]"):
        formats.detect("x", ["text", "label"])


def test_a_mapping_to_an_absent_column_or_unknown_field_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        formats.detect("x", ["prompt", "chosen", "rejected"], "auto", {"prompt": "instruction"})
    assert info.value.problems[0][0] == "items.columns.prompt" and "'instruction'" in info.value.problems[0][1]
    with pytest.raises(ConfigError, match=r"items\.columns\.answer"):
        formats.detect("x", ["prompt"], "auto", {"answer": "prompt"})


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "rejected", "same text as chosen"),
        ({"prompt": "Q", "chosen": " \t", "rejected": "b"}, "chosen", "whitespace"),
        ({"prompt": None, "chosen": "a", "rejected": "b"}, "prompt", "text or a non-empty list"),
        ({"prompt": "Q", "chosen": 3, "rejected": "b"}, "chosen", "text or a non-empty list"),
        ({"prompt": "Q", "chosen": [{"role": "assistant"}], "rejected": "b"}, "chosen", "with role and content"),
    ],
)
def test_bad_pairwise_rows_name_the_column(row: dict, column: str, reason: str) -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    with pytest.raises(RowError) as info:
        formats.parse(layout, row, SPEC)
    assert info.value.column == column and reason in info.value.reason


def test_conversations_that_do_not_share_an_opening_cannot_give_a_prompt() -> None:
    layout = formats.detect("v", ["chosen", "rejected"])
    row = {
        "chosen": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "a"}],
        "rejected": [{"role": "user", "content": "B?"}, {"role": "assistant", "content": "b"}],
    }
    with pytest.raises(RowError, match="share opening turns"):
        formats.parse(layout, row, SPEC)


def test_stances_need_a_survey_topic_but_open_items_do_not() -> None:
    layout = formats.detect("o", ["id", "topic", "prompt", "responses"])
    open_item, topical = (formats.parse(layout, row, SPEC) for row in _rows("open_polypref.jsonl"))
    assert open_item.topic is None and not open_item.annotated
    assert topical.topic == "natenvir" and not topical.annotated
    stanced = {"topic": "gardening", "prompt": "Q", "responses": [{"text": "a", "stance": "x"}, {"text": "b"}]}
    with pytest.raises(RowError) as info:
        formats.parse(layout, stanced, SPEC)
    assert info.value.column == "topic" and "open item" in info.value.reason


@pytest.mark.parametrize("score", [float("nan"), float("inf"), True, int("9" * 400), "eight", "nan", [8]])
def test_ratings_must_be_finite_numbers(score: object) -> None:
    """A NaN rating compares false both ways and would silently invert the source's label."""
    layout = formats.detect("c", ["prompt", "completions"])
    row = {"prompt": "Q", "completions": [{"text": "a", "score": score}, {"text": "b", "score": 1}]}
    with pytest.raises(RowError) as info:
        formats.parse(layout, row, SPEC)
    assert info.value.column == "completions.0.score"


def test_mixed_texts_and_conversations_are_read_as_given() -> None:
    """A text prompt with conversational responses is kept as it is (the build publishes it as messages)."""
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    turns = [{"role": "assistant", "content": "y"}, {"role": "user", "content": "z"}]
    item = formats.parse(layout, {"prompt": "p", "chosen": "x", "rejected": turns}, SPEC)
    assert item.messages is None and item.responses[1].messages == tuple(Message(**m) for m in turns)


def test_null_keys_that_parquet_adds_to_messages_are_ignored() -> None:
    layout = formats.detect("p", ["prompt", "chosen", "rejected"])
    row = {"prompt": [{"role": "user", "content": "Q", "name": None}], "chosen": "a", "rejected": "b"}
    assert formats.parse(layout, row, SPEC).messages == (Message("user", "Q"),)


def test_one_column_cannot_be_two_fields() -> None:
    with pytest.raises(ConfigError, match=r"items\.columns\.prompt.*also mapped to chosen"):
        formats.detect("x", ["a", "b"], "pairwise", {"chosen": "a", "prompt": "a", "rejected": "b"})


def test_an_unknown_format_is_a_config_error_naming_the_choices() -> None:
    from polypref.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(None, ["items.format=trl"])
    field, reason = info.value.problems[0]
    assert field == "items.format" and "pairwise" in reason and "completions" in reason
