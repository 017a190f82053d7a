"""Other tools' item files (pairwise, completions, conversational, arena, UltraFeedback and distilabel ratings,
HH-RLHF strings; JSONL or Parquet) either load with every text and label exactly as written, or are refused with a
ConfigError naming the file and a row or column. Never a crash."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polypref import files
from polypref.errors import ConfigError
from polypref.items import load_items
from polypref.population import load_spec
from polypref.records import Item
from tests.property.strategies import junk, mutated, texts

SPEC = load_spec("gss_spending")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(text: str) -> bool:
    return not files.is_blank(text) and not any(0xD800 <= ord(c) < 0xE000 for c in text)


valid_texts = st.one_of(texts, st.text(min_size=1, max_size=30)).filter(_valid)
roles = st.sampled_from(["system", "user", "assistant"])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": valid_texts}), min_size=1, max_size=3)
# a conversation's prompt ends with the user's turn (else a response could be its last turn, repeated)
prompt_messages = st.tuples(messages, valid_texts).map(lambda m: [*m[0], {"role": "user", "content": m[1]}])


@st.composite
def pairwise_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    conversational = draw(st.booleans())
    rows = []
    for index in range(draw(st.integers(1, 4))):
        prompt = draw(prompt_messages) if conversational else draw(valid_texts)
        chosen, rejected = draw(st.lists(valid_texts, min_size=2, max_size=2, unique=True))
        if conversational:
            chosen, rejected = ([{"role": "assistant", "content": t}] for t in (chosen, rejected))
        rows.append({"id": f"row-{index}", "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


@st.composite
def completions_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for index in range(draw(st.integers(1, 4))):
        answers = draw(st.lists(valid_texts, min_size=2, max_size=4, unique=True))
        structured = draw(st.booleans())
        completions = [{"model": f"m{i}", "response": t} for i, t in enumerate(answers)] if structured else answers
        rows.append({"id": f"row-{index}", "instruction": draw(valid_texts), "completions": completions})
    return rows


# ---- more shapes, each drawn with what must be read from it: (rows, [expected item per row]) ----------------
# An expected item: {"prompt": text or [(role, content)], "responses": [text or [(role, content)]], "side": index
# of the response the source prefers or None, "scores": [rating or None] (completions)}

Case = tuple[list[dict[str, Any]], list[dict[str, Any]]]
ratings = st.one_of(st.none(), st.integers(1, 10))


def _turns(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages]


@st.composite
def arena_rows(draw: st.DrawFn) -> Case:
    """Chatbot Arena: a question and two answers, or (conversations=True) two whole conversations sharing it."""
    sides = {"model_a": 0, "a": 0, "A": 0, "model_b": 1, "b": 1, "tie": None, "tie (bothbad)": None, None: None}
    conversations = draw(st.booleans())
    rows, expected = [], []
    for index in range(draw(st.integers(1, 4))):
        a, b = draw(st.lists(valid_texts, min_size=2, max_size=2, unique=True))
        # some row states a preference: a source whose winners are all null is refused (see the unit tests)
        winner = draw(st.sampled_from(list(sides)[:2] if index == 0 else list(sides)))
        question = draw(valid_texts)
        row: dict[str, Any] = {"id": f"row-{index}", "winner": winner, "model_a": "m-a", "model_b": "m-b", "turn": 1}
        if conversations:
            opening = [{"role": "user", "content": question}]
            row |= {
                f"conversation_{s}": [*opening, {"role": "assistant", "content": t}] for s, t in (("a", a), ("b", b))
            }
            want = {"prompt": [("user", question)], "responses": [[("assistant", a)], [("assistant", b)]]}
        else:
            row |= {"question": question, "response_a": a, "response_b": b}
            want = {"prompt": question, "responses": [a, b]}
        rows.append(row)
        expected.append({**want, "side": sides[winner], "models": ["m-a", "m-b"]})
    return rows, expected


def _rated(style: str, text: str, rating: int | None, aspect: int | None) -> dict[str, Any]:
    """A completion as UltraFeedback writes one, its rating under ``style``'s key."""
    if style == "annotations":
        notes = [rating, aspect]
        return {
            "response": text,
            "annotations": {
                k: {"Rating": "N/A" if r is None else str(r), "Rationale": "r"}
                for k, r in zip(("helpfulness", "honesty"), notes, strict=True)
            },
        }
    key = {"overall": "overall_score", "fine": "fine-grained_score", "strings": "overall_score"}[style]
    value = str(rating) if style == "strings" and rating is not None else "N/A" if style == "strings" else rating
    return {"model": "m", "response": text, key: value, "critique": "c", "custom_system_prompt": "s"}


def _mean(ratings: tuple[int | None, ...]) -> float | None:
    given = [r for r in ratings if r is not None]
    return sum(given) / len(given) if given else None


@st.composite
def rated_rows(draw: st.DrawFn) -> Case:
    style = draw(st.sampled_from(["overall", "fine", "strings", "annotations", "distilabel"]))
    rows, expected = [], []
    for index in range(draw(st.integers(1, 3))):
        answers = draw(st.lists(valid_texts, min_size=2, max_size=4, unique=True))
        scores = draw(st.lists(ratings, min_size=len(answers), max_size=len(answers)))
        aspects = draw(st.lists(ratings, min_size=len(answers), max_size=len(answers)))
        if index == 0:
            scores[0] = scores[0] or 5  # some rating is read: a source whose ratings are all null is refused
        prompt = draw(valid_texts)
        if style == "distilabel":
            row = {"instruction": prompt, "generations": answers, "ratings": scores, "model_name": "judge"}
        else:
            rated = zip(answers, scores, aspects, strict=True)
            row = {"instruction": prompt, "completions": [_rated(style, *values) for values in rated]}
        if style == "annotations":  # the mean of the aspects rated
            scores = [_mean(pair) for pair in zip(scores, aspects, strict=True)]
        rows.append({"id": f"row-{index}", **row})
        expected.append(
            {"prompt": prompt, "responses": answers, "scores": [None if s is None else float(s) for s in scores]}
        )
    return rows, expected


@st.composite
def hh_rows(draw: st.DrawFn) -> Case:
    """Anthropic HH-RLHF: whole conversations as "\n\nHuman: ...\n\nAssistant: ..." strings."""
    rows, expected = [], []
    for index in range(draw(st.integers(1, 3))):
        turns = draw(st.lists(valid_texts, min_size=1, max_size=1 + 2 * draw(st.integers(0, 2))))
        turns = turns[: len(turns) - (len(turns) % 2 == 0)]  # the user's turn last
        prefix = [("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)]
        finals = draw(st.lists(valid_texts, min_size=2, max_size=2, unique=True))
        hh = [
            "".join(f"\n\n{'Human' if r == 'user' else 'Assistant'}: {t}" for r, t in [*prefix, ("assistant", f)])
            for f in finals
        ]
        rows.append({"id": f"row-{index}", "chosen": hh[0], "rejected": hh[1]})
        responses = [[("assistant", f)] for f in finals]
        expected.append({"prompt": prefix, "responses": responses, "side": 0})
    return rows, expected


def _message(draw: st.DrawFn, role: str, content: str) -> dict[str, Any]:
    """A message as chat tools write one: content as text or as text parts, maybe with other keys."""
    message: dict[str, Any] = {"role": role, "content": content}
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(content)))
        message["content"] = [{"type": "text", "text": content[:cut]}, {"type": "text", "text": content[cut:]}]
    if draw(st.booleans()):
        message["name"] = "someone"
    return message


@st.composite
def binarized_rows(draw: st.DrawFn) -> Case:
    """ultrafeedback_binarized: a text prompt, and responses that repeat it as their first (user) turn, maybe after
    a shared system turn."""
    rows, expected = [], []
    for index in range(draw(st.integers(1, 3))):
        prompt = draw(valid_texts)
        system = [("system", draw(valid_texts))] if draw(st.booleans()) else []
        answers = draw(st.lists(valid_texts, min_size=2, max_size=2, unique=True))
        chosen, rejected = (
            [_message(draw, r, t) for r, t in [*system, ("user", prompt), ("assistant", a)]] for a in answers
        )
        rows.append({"id": f"row-{index}", "prompt": prompt, "chosen": chosen, "rejected": rejected})
        shown = [*system, ("user", prompt)] if system else prompt
        expected.append({"prompt": shown, "responses": [[("assistant", a)] for a in answers], "side": 0})
    return rows, expected


more_cases = st.one_of(arena_rows(), rated_rows(), hh_rows(), binarized_rows())


def _read_back(item: Item) -> dict[str, Any]:
    """An item in the shape of the expected ones."""
    prompt = _turns([{"role": m.role, "content": m.content} for m in item.messages]) if item.messages else item.prompt
    responses = [
        _turns([{"role": m.role, "content": m.content} for m in r.messages]) if r.messages else r.text
        for r in item.responses
    ]
    side = next((i for i, r in enumerate(item.responses) if r.id == item.label), None)
    return {
        "prompt": prompt,
        "responses": responses,
        "side": side,
        "scores": [r.score for r in item.responses],
        "models": [r.model for r in item.responses],
    }


def _texts(row: dict[str, Any]) -> list[str]:
    """Every text of a valid row, in the order the loaded item holds them: prompt, then responses."""

    def flat(value: Any) -> list[str]:
        return [m["content"] for m in value] if isinstance(value, list) else [value]

    if "completions" in row:
        answers = [c["response"] if isinstance(c, dict) else c for c in row["completions"]]
        return [row["instruction"], *answers]
    return [*flat(row["prompt"]), *flat(row["chosen"]), *flat(row["rejected"])]


def _loaded_texts(item: Item) -> list[str]:
    prompt = [m.content for m in item.messages] if item.messages else [item.prompt]
    return [
        *prompt,
        *(m.content for r in item.responses for m in (r.messages or ())),
        *(r.text for r in item.responses if r.messages is None),
    ]


def _write(folder: Path, rows: list[Any], as_parquet: bool) -> Path:
    if as_parquet:
        path = folder / "items.parquet"
        try:
            pq.write_table(pa.Table.from_pylist(rows), path)
        except (pa.ArrowException, AttributeError, TypeError, ValueError, OverflowError):
            # not a table Arrow can hold, or Parquet can store (an empty struct): test it as JSONL
            path.unlink(missing_ok=True)
            return _write(folder, rows, as_parquet=False)
        return path
    path = folder / "items.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass"))
    return path


def _load(path: Path) -> tuple[Item, ...] | None:
    try:
        items = load_items(str(path), SPEC)
    except ConfigError as e:
        assert e.source.startswith(str(path)) or e.source == "config", e
        assert all(field or reason for field, reason in e.problems)
        event("refused")
        return None
    event("loaded")
    return items


@SETTINGS
@given(rows=st.one_of(pairwise_rows(), completions_rows()), as_parquet=st.booleans())
def test_valid_files_of_other_formats_load_exactly(rows: list[dict[str, Any]], as_parquet: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        items = load_items(str(_write(Path(folder), rows, as_parquet)), SPEC)
    assert [i.id for i in items] == [r["id"] for r in rows]
    assert [sorted(_loaded_texts(i)) for i in items] == [sorted(_texts(r)) for r in rows]
    for item in items:
        if "completions" not in rows[0]:
            assert item.label == item.responses[0].id  # the source's chosen


@SETTINGS
@given(
    rows=st.one_of(pairwise_rows(), completions_rows()).flatmap(lambda rows: mutated(rows, junk)),
    as_parquet=st.booleans(),
)
def test_damaged_files_of_other_formats_load_soundly_or_name_the_file(rows: Any, as_parquet: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if not isinstance(rows, list):
            rows = [rows]
        items = _load(_write(Path(folder), rows, as_parquet))
    for item in items or ():
        assert not files.is_blank(item.prompt)
        assert len(item.responses) >= 2 or not item.responses  # none: read as prompts, for generation
        assert len({r.text for r in item.responses}) == len(item.responses)
        assert all(_valid(t) for t in _loaded_texts(item))


@SETTINGS
@given(case=more_cases, as_parquet=st.booleans())
def test_valid_files_of_more_shapes_load_exactly(case: Case, as_parquet: bool) -> None:
    rows, expected = case
    with tempfile.TemporaryDirectory() as folder:
        items = load_items(str(_write(Path(folder), rows, as_parquet)), SPEC)
    assert [i.id for i in items] == [r["id"] for r in rows]
    for item, want in zip(items, expected, strict=True):
        got = _read_back(item)
        assert {k: got[k] for k in want} == want


@SETTINGS
@given(rows=more_cases.flatmap(lambda case: mutated(case[0], junk)), as_parquet=st.booleans())
def test_damaged_files_of_more_shapes_load_soundly_or_name_the_file(rows: Any, as_parquet: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if not isinstance(rows, list):
            rows = [rows]
        items = _load(_write(Path(folder), rows, as_parquet))
    for item in items or ():
        assert not files.is_blank(item.prompt)
        assert len(item.responses) >= 2 or not item.responses
        assert len({r.text for r in item.responses}) == len(item.responses)
        assert all(_valid(t) for t in _loaded_texts(item))
        assert item.label is None or item.label in {r.id for r in item.responses}
        assert all(r.score is None or math.isfinite(r.score) for r in item.responses)
