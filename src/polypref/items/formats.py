"""Item formats: which columns a source has, and how one of its rows becomes an Item.

- ``polypref``: ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance", "model"}]}`` per row (JSONL, or
  Parquet with a list column), or the flat Parquet layout with one response per row (see ``sources``).
- ``pairwise``: ``prompt``, ``chosen``, ``rejected`` (TRL's preference format); the source's label is kept.
- ``completions``: a prompt and a list of responses (UltraFeedback's ``instruction`` + ``completions``), each a
  text or an object with the text under ``response``, ``text`` or ``content``, and optionally ``model`` and a
  rating under ``overall_score``, ``score`` or ``rating`` (the higher-rated response is the source's label).
- ``prompts``: a prompt only; responses are generated before judging.

Texts are strings, or conversations: lists of ``{"role", "content"}`` messages (TRL's conversational format).
A pairwise source whose ``chosen`` and ``rejected`` are whole conversations without a ``prompt`` column has
their shared opening turns as its prompt, as TRL's ``extract_prompt`` does.

``items.columns`` maps these field names to a source's own spelling, e.g. ``{prompt: instruction}``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from polypref import files
from polypref.errors import ConfigError
from polypref.population.spec import SurveySpec
from polypref.records import Item, Message, Messages, Response, content_hash, messages_text

FORMATS = ("polypref", "pairwise", "completions", "prompts")
FormatName = Literal["auto", "polypref", "pairwise", "completions", "prompts"]

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
    "completions": ("completions",),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "polypref": ("prompt", "responses"),
    "pairwise": ("chosen", "rejected"),  # prompt too, unless chosen and rejected are whole conversations
    "completions": ("prompt", "completions"),
    "prompts": ("prompt",),
}
OPTIONAL = ("id", "topic")
_COMPLETION_TEXT = ("response", "text", "content")
_COMPLETION_SCORE = ("overall_score", "score", "rating")


def _text(value: str) -> str:
    if files.is_blank(value):
        raise ValueError("must not be empty, whitespace or invisible characters only")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\\ud800" decodes to a lone surrogate, which no UTF-8 file can store
        raise ValueError("holds an unpaired surrogate (a \\ud800-\\udfff escape), which is not Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_text)]


def _turns(value: Any) -> str | Messages:
    """A text, or a conversation: a non-empty list of {role, content} messages (as a tuple of Message)."""
    if isinstance(value, str):
        return _text(value)
    if not isinstance(value, list) or not value:
        raise ValueError("must be a text or a non-empty list of {role, content} messages")
    turns = []
    for index, message in enumerate(value):
        if isinstance(message, dict):  # Parquet gives every message every key any message has: nulls are absent
            message = {k: v for k, v in message.items() if v is not None or k in ("role", "content")}
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            keys = sorted(message) if isinstance(message, dict) else type(message).__name__
            raise ValueError(f"message {index} must be an object with exactly role and content (got {keys})")
        for key in ("role", "content"):
            if not isinstance(message[key], str):
                raise ValueError(f"message {index}: {key} must be text (got {type(message[key]).__name__})")
            try:
                _text(message[key])
            except ValueError as e:
                raise ValueError(f"message {index}: {key} {e}") from None
        turns.append(Message(message["role"], message["content"]))
    return tuple(turns)


def _id(value: Any) -> str:
    """Ids are texts; integer ids (common in Parquet) are read as their decimal text."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a text or an integer (got {type(value).__name__})")
    return _text(value) if isinstance(value, str) else str(value)


TextOrConversation = Annotated[Any, AfterValidator(_turns)]
Id = Annotated[Any, AfterValidator(_id)]
Score = Annotated[float, Field(allow_inf_nan=False)]  # NaN would compare false both ways and invert labels


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


class _PromptIn(BaseModel):
    model_config = ConfigDict(strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation


MODELS: dict[str, type[BaseModel]] = {
    "polypref": _PolyprefIn,
    "pairwise": _PairwiseIn,
    "completions": _CompletionsIn,
    "prompts": _PromptIn,
}


class Layout:
    """A source's format and which of its columns holds each field."""

    def __init__(self, name: str, columns: Mapping[str, str]):
        self.name = name
        self.columns = dict(columns)  # field -> source column

    @property
    def flat(self) -> bool:
        return self.name == "polypref" and "responses" not in self.columns


def detect(source: str, found: Sequence[str], format: str = "auto", mapping: Mapping[str, str] | None = None) -> Layout:
    """The layout of a source with columns ``found``: its format (``format``, or told from the columns) and
    where each field lives. A field the format needs and the source lacks is an error naming both."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(ALIASES))
    if unknown:
        raise ConfigError("config", [(f"items.columns.{unknown[0]}", f"unknown field; fields: {sorted(ALIASES)}")])
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
        raise ConfigError(
            source,
            [
                (
                    f"column {field}",
                    f"the {format} format needs a {field!r} column; columns found: {list(found)}; {hint}",
                )
            ],
        )
    keep = (*REQUIRED[format], *OPTIONAL, *(("prompt",) if format == "pairwise" else ()))
    return Layout(format, {f: located[f] for f in keep if f in located})


def _guess(source: str, found: Sequence[str], located: Mapping[str, str]) -> str:
    if "responses" in located or set(FLAT_COLUMNS) <= set(found):
        return "polypref"
    if "chosen" in located or "rejected" in located:  # one without the other: pairwise, missing a column
        return "pairwise"
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
                "rejected (pairwise), completions (completions) or a prompt alone (prompts); set items.format, and "
                "items.columns for other spellings",
            )
        ],
    )


def parse(layout: Layout, data: Mapping[str, Any], spec: SurveySpec) -> Item:
    """One row of a source as an Item; raises RowError(column path, reason) on a bad value."""
    if layout.name == "polypref":  # its own format: every key is checked, unknown ones refused
        field_of = {c: f for f, c in layout.columns.items()}
        fields = {field_of.get(k, k): v for k, v in data.items()}
    else:  # another tool's rows: the columns the format reads, whatever else the source holds
        fields = {f: data.get(c) for f, c in layout.columns.items()}
    if layout.name == "completions" and isinstance(fields.get("completions"), list):
        fields["completions"] = [_completion(c) for c in fields["completions"]]
    try:
        parsed = MODELS[layout.name].model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        raise RowError(_column_path(layout, err["loc"]), err["msg"].removeprefix("Value error, ")) from None
    topic = getattr(parsed, "topic", None)
    if isinstance(parsed, _PolyprefIn):
        return _polypref_item(layout, parsed, spec)
    item_id = getattr(parsed, "id", None)
    if isinstance(parsed, _PairwiseIn):
        prompt, chosen, rejected = _pairwise_turns(layout, parsed)
        responses = [_response(prompt, text) for text in (chosen, rejected)]
        _distinct(layout, responses, ("chosen", "rejected"))
        return _item(item_id, topic, prompt, responses, label=responses[0].id, extra=(chosen, rejected))
    if isinstance(parsed, _CompletionsIn):
        responses = [_response(parsed.prompt, c.text, model=c.model, score=c.score) for c in parsed.completions]
        _distinct(layout, responses, tuple(f"completions.{i}" for i in range(len(responses))))
        return _item(item_id, topic, parsed.prompt, responses)
    return _item(item_id, topic, parsed.prompt, [])


class RowError(ValueError):
    """A bad value in one row: ``column`` is the source's column (with a path into nested values). ``between``:
    two responses (by index) that clash, which the reader names as the user knows them (see ``describe``)."""

    def __init__(self, column: str, reason: str, between: tuple[int, int] | None = None):
        super().__init__(column, reason)
        self.column, self.reason, self.between = column, reason, between

    def describe(self, name: Callable[[int], str] = lambda i: f"responses.{i}") -> str:
        return f"{name(self.between[0])} and {name(self.between[1])} {self.reason}" if self.between else self.reason


def _completion(value: Any) -> Any:
    """A completion as {text, model, score}, whatever the source calls its keys."""
    if not isinstance(value, dict):
        return {"text": value}
    text = next((value[k] for k in _COMPLETION_TEXT if value.get(k) is not None), None)
    score = next((value[k] for k in _COMPLETION_SCORE if value.get(k) is not None), None)
    return {"text": text, "model": value.get("model"), "score": score}


def _column_path(layout: Layout, loc: tuple[int | str, ...]) -> str:
    field, *rest = loc
    column = layout.columns.get(str(field), str(field))
    if layout.name == "completions" and rest and rest[-1] == "text":
        rest = rest[:-1]
    return ".".join([_printable(column), *map(_printable, rest)])


def _printable(part: int | str) -> str:
    text = str(part)
    return text if text.isprintable() else repr(text)


def _shared(label: str | None) -> str | None:
    """One string object per distinct topic or stance, not one per row: 10^6 items repeat a handful of them."""
    return sys.intern(label) if label is not None else None


@functools.cache
def _position(index: int, steps: int) -> float:
    """A stance's place on its scale, 0 to 1: one float object per place, not one per response (2M at 10^6
    items, 46 MB)."""
    return index / (steps - 1)


def _messages(value: str | Messages) -> Messages | None:
    return None if isinstance(value, str) else value


def _as_text(value: str | Messages) -> str:
    return value if isinstance(value, str) else messages_text(value)


def _response(
    prompt: Any, text: Any, id: str | None = None, model: str | None = None, score: float | None = None, **kw: Any
) -> Response:
    shown = _as_text(text)
    return Response(
        id=id if id is not None else content_hash(_as_text(prompt), shown),
        text=shown,
        model=model,
        score=score,
        messages=_messages(text),
        **kw,
    )


def _item(
    item_id: str | int | None,
    topic: str | None,
    prompt: Any,
    responses: list[Response],
    label: str | None = None,
    extra: tuple[Any, ...] = (),
) -> Item:
    text = _as_text(prompt)
    if item_id is None:  # a prompt can come with several pairs: the texts judged are part of the identity
        item_id = content_hash(topic, text, *(_as_text(e) for e in extra))
    return Item(
        id=str(item_id), topic=topic, prompt=text, responses=tuple(responses), messages=_messages(prompt), label=label
    )


def _pairwise_turns(layout: Layout, parsed: _PairwiseIn) -> tuple[Any, Any, Any]:
    """Prompt, chosen and rejected; with no prompt, the conversations' shared opening turns are the prompt."""
    if parsed.prompt is None and "prompt" in layout.columns:
        raise RowError(layout.columns["prompt"], "must be a text or a non-empty list of {role, content} messages")
    if parsed.prompt is not None:
        return parsed.prompt, parsed.chosen, parsed.rejected
    chosen, rejected = parsed.chosen, parsed.rejected
    if not (isinstance(chosen, tuple) and isinstance(rejected, tuple)):
        raise RowError(
            "prompt", f"no prompt column; found columns for {sorted(layout.columns)} (map one with items.columns)"
        )
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or shared == len(chosen) or shared == len(rejected):
        column = layout.columns["chosen"]
        raise RowError(column, "without a prompt column, chosen and rejected must share opening turns and then differ")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _distinct(layout: Layout, responses: list[Response], names: tuple[str, ...]) -> None:
    seen: dict[str, int] = {}
    for index, r in enumerate(responses):
        if r.text in seen:
            first = names[seen[r.text]]
            raise RowError(layout.columns.get(names[index], names[index]), f"has the same text as {first}")
        seen[r.text] = index


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
    responses = []
    for index, r in enumerate(parsed.responses):
        position = None
        if r.stance is not None:
            assert scale is not None
            if r.stance not in scale:
                raise RowError(f"responses.{index}.stance", f"{r.stance!r} is not on {scale}")
            position = _position(scale.index(r.stance), len(scale))
        responses.append(
            _response(
                parsed.prompt,
                r.text,
                id=r.id,
                model=r.model,
                score=r.score,
                stance=_shared(r.stance),
                position=position,
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
    item_id = parsed.id if parsed.id is not None else content_hash(parsed.topic, _as_text(parsed.prompt))
    return Item(
        id=item_id,
        topic=_shared(parsed.topic),
        prompt=_as_text(parsed.prompt),
        responses=tuple(responses),
        messages=_messages(parsed.prompt),
        label=parsed.label,
    )
