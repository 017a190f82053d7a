"""Each format's row as an Item: the row's model (pydantic, strict: a wrong type is the row's error, never coerced),
and the conversion. ``formats`` tells the format and where each field lives, then hands a row here.

A failed check raises RowError naming the source's column; the models' class names show in some messages
("a valid dictionary or instance of _ResponseIn"), so they stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polypref.items.labels import completion_fields, parallel_values, winner_index
from polypref.items.layout import Layout
from polypref.items.texts import (
    Id,
    RowError,
    Score,
    Text,
    TextOrConversation,
    as_text,
    check_distinct,
    hh_turns,
    interned,
    make_item,
    make_response,
    messages_of,
    printable,
    scale_position,
    without_prompt,
)
from polypref.population.spec import SurveySpec
from polypref.records import Item, content_hash


class _ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Id | None = None
    text: TextOrConversation
    stance: str | None = None
    model: Text | None = None
    score: Score | None = None


class _PolyprefIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation
    responses: list[_ResponseIn] = Field(min_length=2)
    label: Text | None = None  # id of the response the source prefers


POLYPREF_KEYS = frozenset(_PolyprefIn.model_fields)  # what polypref's own format reads of a row


class _PairwiseIn(BaseModel):
    model_config = ConfigDict(strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation | None = None
    chosen: TextOrConversation
    rejected: TextOrConversation


class _CompletionIn(BaseModel):
    model_config = ConfigDict(strict=True)
    text: TextOrConversation
    model: Text | None = None
    score: Score | None = None


class _CompletionsIn(BaseModel):
    model_config = ConfigDict(strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation
    completions: list[_CompletionIn] = Field(min_length=2)


class _ArenaIn(BaseModel):
    model_config = ConfigDict(strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation | None = None
    response_a: TextOrConversation
    response_b: TextOrConversation
    model_a: Text | None = None
    model_b: Text | None = None
    winner: Any = None  # read by winner_index, which names the values it knows


class _PromptIn(BaseModel):
    model_config = ConfigDict(strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation


MODELS: dict[str, type[BaseModel]] = {
    "polypref": _PolyprefIn,
    "pairwise": _PairwiseIn,
    "completions": _CompletionsIn,
    "arena": _ArenaIn,
    "prompts": _PromptIn,
}


def _validated(layout: Layout, fields: Mapping[str, Any], paths: Sequence[Mapping[str, str]] = ()) -> BaseModel:
    """``fields`` checked by the format's model; an error names the source's column (``paths``: each
    completion's fields -> the user's keys)."""
    try:
        return MODELS[layout.name].model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        raise RowError(_column_path(layout, err["loc"], paths), err["msg"].removeprefix("Value error, ")) from None


def _column_path(layout: Layout, loc: tuple[int | str, ...], paths: Sequence[Mapping[str, str]] = ()) -> str:
    field, *rest = loc
    if field == "completions" and len(rest) == 2 and isinstance(rest[0], int) and rest[0] < len(paths):
        known = paths[rest[0]].get(str(rest[1]))
        if known is not None:
            return known
    column = layout.columns.get(str(field), str(field))
    if layout.name == "completions" and rest and rest[-1] == "text":
        rest = rest[:-1]
    return ".".join([printable(column), *map(printable, rest)])


def polypref_item(layout: Layout, fields: Mapping[str, Any], spec: SurveySpec) -> Item:
    """A row of polypref's own format, keyed by field: every key is checked, unknown ones refused."""
    parsed = _validated(layout, fields)
    assert isinstance(parsed, _PolyprefIn)
    return _polypref_item(layout, parsed, spec)


def prompt_item(layout: Layout, fields: dict[str, Any]) -> Item:
    """A prompt alone: responses are generated before judging."""
    parsed = _validated(layout, fields)
    assert isinstance(parsed, _PromptIn)
    return make_item(parsed.id, parsed.topic, parsed.prompt, [])


# ---- completions ------------------------------------------------------------------------------------------------


def completions_item(layout: Layout, fields: dict[str, Any]) -> Item:
    ratings, models = fields.pop("ratings", None), fields.pop("models", None)
    completions = fields.get("completions")
    paths: list[dict[str, str]] = []
    if isinstance(completions, list):
        count = len(completions)
        ratings = parallel_values(layout, "ratings", ratings, count)
        models = parallel_values(layout, "models", models, count)
        read = [completion_fields(layout, i, c, ratings[i], models[i]) for i, c in enumerate(completions)]
        fields["completions"] = [values for values, _ in read]
        paths = [where for _, where in read]
    parsed = _validated(layout, fields, paths)
    assert isinstance(parsed, _CompletionsIn)
    names = [p["text"] for p in paths]
    prompt, texts = without_prompt(parsed.prompt, [c.text for c in parsed.completions], names)
    shown = as_text(prompt)
    responses = [
        make_response(shown, text, model=c.model, score=c.score)
        for text, c in zip(texts, parsed.completions, strict=True)
    ]
    check_distinct(layout, responses, tuple(names))
    return make_item(parsed.id, parsed.topic, prompt, responses)


# ---- pairwise and arena: two responses, and the source's label --------------------------------------------------


def pairwise_item(layout: Layout, fields: dict[str, Any]) -> Item:
    parsed = _validated(layout, fields)
    assert isinstance(parsed, _PairwiseIn)
    columns = layout.columns
    prompt = hh_turns(parsed.prompt, columns.get("prompt", "prompt"), prompt=True)
    chosen, rejected = hh_turns(parsed.chosen, columns["chosen"]), hh_turns(parsed.rejected, columns["rejected"])
    prompt, chosen, rejected = _two_turns(layout, prompt, chosen, rejected, ("chosen", "rejected"))
    shown = as_text(prompt)
    responses = [make_response(shown, chosen), make_response(shown, rejected)]
    check_distinct(layout, responses, ("chosen", "rejected"))
    texts = (responses[0].text, responses[1].text)
    return make_item(parsed.id, parsed.topic, prompt, responses, label=responses[0].id, extra=texts)


def arena_item(layout: Layout, fields: dict[str, Any]) -> Item:
    parsed = _validated(layout, fields)
    assert isinstance(parsed, _ArenaIn)
    return _arena_item(layout, parsed)


def _arena_item(layout: Layout, parsed: _ArenaIn) -> Item:
    names = ("response_a", "response_b")
    prompt, a, b = _two_turns(layout, parsed.prompt, parsed.response_a, parsed.response_b, names)
    shown = as_text(prompt)
    responses = [make_response(shown, a, model=parsed.model_a), make_response(shown, b, model=parsed.model_b)]
    check_distinct(layout, responses, names)
    winner = winner_index(layout, parsed.winner)
    label = None if winner is None else responses[winner].id
    return make_item(
        parsed.id, parsed.topic, prompt, responses, label=label, extra=(responses[0].text, responses[1].text)
    )


def _two_turns(layout: Layout, prompt: Any, first: Any, second: Any, names: tuple[str, str]) -> tuple[Any, Any, Any]:
    """Prompt and two responses; with no prompt, the conversations' shared opening turns are the prompt."""
    if prompt is None and "prompt" in layout.columns:
        raise RowError(layout.columns["prompt"], "must be a text or a non-empty list of {role, content} messages")
    if prompt is not None:
        if isinstance(first, tuple) or isinstance(second, tuple):  # texts alone cannot repeat the prompt's turns
            prompt, (first, second) = without_prompt(prompt, [first, second], [layout.columns[n] for n in names])
        return prompt, first, second
    if not (isinstance(first, tuple) and isinstance(second, tuple)):
        raise RowError(
            "prompt", f"no prompt column; found columns for {sorted(layout.columns)} (map one with items.columns)"
        )
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    if shared == 0 or shared == len(first) or shared == len(second):
        a, b = (layout.columns[n] for n in names)
        raise RowError(a, f"without a prompt column, {a} and {b} must share opening turns and then differ")
    return first[:shared], first[shared:], second[shared:]


# ---- polypref's own format --------------------------------------------------------------------------------------


def _polypref_item(layout: Layout, parsed: _PolyprefIn, spec: SurveySpec) -> Item:
    stances = [r.stance for r in parsed.responses]
    scale: list[str] | None = None
    if any(s is not None for s in stances):
        if parsed.topic not in spec.attitudes.items:
            raise RowError(
                "topic",
                f"{parsed.topic!r} is not a topic of population spec {spec.name}, so its stances mean nothing "
                f"(topics: {sorted(spec.attitudes.items)}); drop the stances to judge it as an open item",
            )
        scale = spec.scale(parsed.topic)
    names = [f"responses.{i}.text" for i in range(len(parsed.responses))]
    prompt, texts = without_prompt(parsed.prompt, [r.text for r in parsed.responses], names)
    shown = as_text(prompt)
    responses = []
    for index, (r, text) in enumerate(zip(parsed.responses, texts, strict=True)):
        position = None
        if r.stance is not None:
            assert scale is not None
            if r.stance not in scale:
                raise RowError(f"responses.{index}.stance", f"{r.stance!r} is not on {scale}")
            position = scale_position(scale.index(r.stance), len(scale))
        responses.append(
            make_response(
                shown, text, id=r.id, model=r.model, score=r.score, stance=interned(r.stance), position=position
            )
        )
    for what, key in (("the same text", "text"), ("the same id", "id")):
        first: dict[str, int] = {}
        for index, r in enumerate(responses):
            value = getattr(r, key)
            if value in first:
                raise RowError("responses", f"have {what}", between=(first[value], index))
            first[value] = index
    if parsed.label is not None and parsed.label not in {r.id for r in responses}:
        raise RowError("label", f"{parsed.label!r} is not the id of one of the item's responses")
    item_id = parsed.id if parsed.id is not None else content_hash(parsed.topic, shown)
    return Item(
        id=item_id,
        topic=interned(parsed.topic),
        prompt=shown,
        responses=tuple(responses),
        messages=messages_of(prompt),
        label=parsed.label,
    )
