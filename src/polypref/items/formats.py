"""Item formats: which columns a source has, and how one of its rows becomes an Item.

- ``polypref``: ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance", "model"}]}`` per row (JSONL, or
  Parquet with a list column), or the flat Parquet layout with one response per row (see ``sources``).
- ``pairwise``: ``prompt``, ``chosen``, ``rejected`` (TRL's preference format); the source's label is kept.
- ``completions``: a prompt and a list of responses (UltraFeedback's ``instruction`` + ``completions``, or
  distilabel's ``generations`` with parallel ``ratings``), each a text or an object with the text under
  ``response``, ``text`` or ``content``, and optionally ``model`` and a rating: ``overall_score``, ``score``,
  ``rating``, ``fine-grained_score``, or the mean of UltraFeedback's ``annotations.*.Rating``, or the key
  ``items.columns.rating`` names (a dotted path). Ratings are numbers or numeric texts ("N/A": none); the
  higher-rated response of a pair is the source's label.
- ``arena``: a prompt, ``response_a``, ``response_b`` and ``winner`` (Chatbot Arena's: ``model_a``/``a`` or
  ``model_b``/``b`` is the source's label, ``tie`` and ``tie (bothbad)`` state none); ``model_a``/``model_b`` name
  the models.
- ``prompts``: a prompt only; responses are generated before judging.

Texts are strings, or conversations: lists of ``{"role", "content"}`` messages (TRL's conversational format; other
keys are dropped, a content given as a list of text parts is joined). Anthropic's HH-RLHF strings
("\\n\\nHuman: ...\\n\\nAssistant: ...") are read as conversations. A pairwise or arena source whose two responses
are whole conversations without a prompt column has their shared opening turns as its prompt, as TRL's
``extract_prompt`` does; responses that open by repeating the prompt lose those turns (see ``texts.without_prompt``).

``items.columns`` maps these field names to a source's own spelling, e.g. ``{prompt: instruction}``. How a row's
texts are checked and become an Item is ``texts``'; reading the source's labels, ``labels``'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polypref.errors import ConfigError
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

FORMATS = ("polypref", "pairwise", "completions", "arena", "prompts")
FormatName = Literal["auto", "polypref", "pairwise", "completions", "arena", "prompts"]

# The columns of polypref's flat Parquet layout: one response per row, grouped into items by item_id.
FLAT_COLUMNS = ("item_id", "topic", "prompt", "response_id", "response", "stance")

# Field -> the column names recognised without a mapping, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "topic": ("topic",),
    "prompt": ("prompt", "instruction", "question"),
    "responses": ("responses",),
    "chosen": ("chosen",),
    "rejected": ("rejected",),
    "completions": ("completions", "generations"),
    "ratings": ("ratings",),  # distilabel: one rating per generation
    "models": ("model_names", "generation_models"),  # distilabel: one model per generation
    "response_a": ("response_a", "conversation_a"),
    "response_b": ("response_b", "conversation_b"),
    "winner": ("winner",),
    "model_a": ("model_a",),
    "model_b": ("model_b",),
}
KEYS = ("rating",)  # fields that name a key inside each completion, not a column
REQUIRED: dict[str, tuple[str, ...]] = {
    "polypref": ("prompt", "responses"),
    "pairwise": ("chosen", "rejected"),  # prompt too, unless chosen and rejected are whole conversations
    "completions": ("prompt", "completions"),
    "arena": ("response_a", "response_b"),  # prompt too, unless the responses are whole conversations
    "prompts": ("prompt",),
}
OPTIONAL = ("id", "topic")
FORMAT_OPTIONAL: dict[str, tuple[str, ...]] = {
    "pairwise": ("prompt",),
    "completions": ("ratings", "models"),
    "arena": ("prompt", "winner", "model_a", "model_b"),
}


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


def detect(source: str, found: Sequence[str], format: str = "auto", mapping: Mapping[str, str] | None = None) -> Layout:
    """The layout of a source with columns ``found``: its format (``format``, or told from the columns) and
    where each field lives. A field the format needs and the source lacks is an error naming both."""
    mapping = dict(mapping or {})
    keys = {f: mapping.pop(f) for f in KEYS if f in mapping}
    _check_mapping(source, found, mapping, keys)
    columns = {f: mapping.get(f) or next((c for c in names if c in found), None) for f, names in ALIASES.items()}
    located = {f: c for f, c in columns.items() if c is not None}
    if format == "auto":
        format = _guess(source, found, located)
    if format == "polypref" and "responses" not in located and set(FLAT_COLUMNS) <= set(found):
        return Layout("polypref", {c: c for c in FLAT_COLUMNS})
    needed = [f for f in REQUIRED[format] if f not in located]
    if needed:
        field = needed[0]
        hint = f"map it with items.columns: {{{field}: <column>}}"
        reason = f"the {format} format needs a {field!r} column; columns found: {list(found)}; {hint}"
        raise ConfigError(source, [(f"column {field}", reason)])
    if keys and format != "completions":
        reason = f"names a key inside each completion, and the {format} format has no completions"
        raise ConfigError("config", [("items.columns.rating", reason)])
    keep = (*REQUIRED[format], *OPTIONAL, *FORMAT_OPTIONAL.get(format, ()))
    if keys:  # the mapped key, not a ratings column the source may also have
        keep = tuple(f for f in keep if f != "ratings")
    return Layout(format, {f: located[f] for f in keep if f in located}, keys.get("rating"))


def _check_mapping(source: str, found: Sequence[str], mapping: Mapping[str, str], keys: Mapping[str, str]) -> None:
    """``items.columns``: known fields, each column mapped once, and every column mapped in the source."""
    unknown = sorted(set(mapping) - set(ALIASES))
    if unknown:
        fields = sorted((*ALIASES, *KEYS))
        raise ConfigError("config", [(f"items.columns.{unknown[0]}", f"unknown field; fields: {fields}")])
    blank = [f for f, key in keys.items() if not key.strip()]
    if blank:
        raise ConfigError("config", [(f"items.columns.{blank[0]}", "must name a key of each completion")])
    twice = sorted(c for c in set(mapping.values()) if list(mapping.values()).count(c) > 1)
    if twice:
        fields = sorted(f for f, c in mapping.items() if c == twice[0])
        reason = f"column {twice[0]!r} is also mapped to {fields[0]}"
        raise ConfigError("config", [(f"items.columns.{fields[1]}", reason)])
    absent = {f: c for f, c in mapping.items() if c not in found}
    if absent:
        field, column = next(iter(absent.items()))
        raise ConfigError(
            "config", [(f"items.columns.{field}", f"column {column!r} is not in {source} (columns: {list(found)})")]
        )


def _guess(source: str, found: Sequence[str], located: Mapping[str, str]) -> str:
    if "responses" in located or set(FLAT_COLUMNS) <= set(found):
        return "polypref"
    if "chosen" in located or "rejected" in located:  # one without the other: pairwise, missing a column
        return "pairwise"
    if located.keys() & {"response_a", "response_b", "winner"}:
        return "arena"
    if "completions" in located:
        return "completions"
    if "prompt" in located:
        return "prompts"
    raise ConfigError(
        source,
        [
            (
                "columns",
                f"cannot tell the format from the columns {list(found)}: expected responses (polypref), chosen and "
                "rejected (pairwise), completions or generations (completions), response_a, response_b and winner "
                "(arena) or a prompt alone (prompts); set items.format, and items.columns for other spellings",
            )
        ],
    )


def parse(layout: Layout, data: Mapping[str, Any], spec: SurveySpec) -> Item:
    """One row of a source as an Item; raises RowError(column path, reason) on a bad value."""
    if layout.name == "polypref":  # its own format: every key is checked, unknown ones refused
        field_of = {c: f for f, c in layout.columns.items()}
        parsed = _validated(layout, {field_of.get(k, k): v for k, v in data.items()})
        assert isinstance(parsed, _PolyprefIn)
        return _polypref_item(layout, parsed, spec)
    # another tool's rows: the columns the format reads, whatever else the source holds
    fields = {f: data.get(c) for f, c in layout.columns.items()}
    if layout.name == "completions":
        return _completions_item(layout, fields)
    if layout.name == "pairwise":
        return _pairwise_item(layout, fields)
    parsed = _validated(layout, fields)
    if isinstance(parsed, _ArenaIn):
        return _arena_item(layout, parsed)
    assert isinstance(parsed, _PromptIn)
    return make_item(parsed.id, parsed.topic, parsed.prompt, [])


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


# ---- completions ------------------------------------------------------------------------------------------------


def _completions_item(layout: Layout, fields: dict[str, Any]) -> Item:
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


def _pairwise_item(layout: Layout, fields: dict[str, Any]) -> Item:
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
