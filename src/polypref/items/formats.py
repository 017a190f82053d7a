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
``extract_prompt`` does; responses that open by repeating the prompt lose those turns (see ``_without_prompt``).

``items.columns`` maps these field names to a source's own spelling, e.g. ``{prompt: instruction}``.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from polypref import files
from polypref.errors import ConfigError
from polypref.population.spec import SurveySpec
from polypref.records import Item, Message, Messages, Response, content_hash, messages_text

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
_COMPLETION_TEXT = ("response", "text", "content")
_COMPLETION_SCORE = ("overall_score", "score", "rating", "fine-grained_score")
_ANNOTATIONS = "annotations"  # UltraFeedback: {aspect: {"Rating": "4", "Rationale": ...}}
_NO_RATING = frozenset({"", "n/a", "na", "none", "null"})
_WINNERS: dict[str, int | None] = {"model_a": 0, "a": 0, "model_b": 1, "b": 1, "tie": None, "tie (bothbad)": None}
_HH_MARK = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_MISSING = object()


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
    """A text, or a conversation: a non-empty list of {role, content} messages (as a tuple of Message). Other keys
    of a message (Parquet's nulls, ``name``, ``tool_calls``) are dropped: a Message carries role and content."""
    if isinstance(value, str):
        return _text(value)
    if not isinstance(value, list) or not value:
        raise ValueError("must be a text or a non-empty list of {role, content} messages")
    turns = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            keys = sorted(message) if isinstance(message, dict) else type(message).__name__
            raise ValueError(f"message {index} must be an object with role and content (got {keys})")
        values = {"role": message["role"], "content": _content(message["content"], index)}
        for key, text in values.items():
            if not isinstance(text, str):
                raise ValueError(f"message {index}: {key} must be text (got {type(text).__name__})")
            try:
                _text(text)
            except ValueError as e:
                raise ValueError(f"message {index}: {key} {e}") from None
        turns.append(Message(values["role"], values["content"]))
    return tuple(turns)


def _content(value: Any, index: int) -> Any:
    """A message's content: a text, or a list of text parts (``[{"type": "text", "text": ...}]``) joined as chat
    templates join them; a part that is not text (an image) cannot be judged."""
    if not isinstance(value, list):
        return value
    for number, part in enumerate(value):
        if not (
            isinstance(part, dict) and part.get("type", "text") in ("text", None) and isinstance(part.get("text"), str)
        ):
            raise ValueError(f"message {index}: content part {number} is not a text part ({{type: text, text: ...}})")
    return "".join(part["text"] for part in value)


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


class _ArenaIn(BaseModel):
    model_config = ConfigDict(strict=True)
    id: Id | None = None
    topic: Text | None = None
    prompt: TextOrConversation | None = None
    response_a: TextOrConversation
    response_b: TextOrConversation
    model_a: Text | None = None
    model_b: Text | None = None
    winner: Any = None  # read by _winner, which names the values it knows


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


class Layout:
    """A source's format, which of its columns holds each field, and (completions) the key inside each completion
    that ``items.columns.rating`` names."""

    def __init__(self, name: str, columns: Mapping[str, str], rating: str | None = None):
        self.name = name
        self.columns = dict(columns)  # field -> source column
        self.rating = rating

    @property
    def flat(self) -> bool:
        return self.name == "polypref" and "responses" not in self.columns


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
    return _item(parsed.id, parsed.topic, parsed.prompt, [])


class RowError(ValueError):
    """A bad value in one row: ``column`` is the source's column (with a path into nested values). ``between``:
    two responses (by index) that clash, which the reader names as the user knows them (see ``describe``)."""

    def __init__(self, column: str, reason: str, between: tuple[int, int] | None = None):
        super().__init__(column, reason)
        self.column, self.reason, self.between = column, reason, between

    def describe(self, name: Callable[[int], str] = lambda i: f"responses.{i}") -> str:
        return f"{name(self.between[0])} and {name(self.between[1])} {self.reason}" if self.between else self.reason


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
    return ".".join([_printable(column), *map(_printable, rest)])


def _printable(part: int | str) -> str:
    text = str(part)
    return text if text.isprintable() else repr(text)


# ---- completions: texts, models and ratings under the source's own keys ---------------------------------------


def _completions_item(layout: Layout, fields: dict[str, Any]) -> Item:
    ratings, models = fields.pop("ratings", None), fields.pop("models", None)
    completions = fields.get("completions")
    paths: list[dict[str, str]] = []
    if isinstance(completions, list):
        count = len(completions)
        ratings = _parallel(layout, "ratings", ratings, count)
        models = _parallel(layout, "models", models, count)
        read = [_completion(layout, i, c, ratings[i], models[i]) for i, c in enumerate(completions)]
        fields["completions"] = [values for values, _ in read]
        paths = [where for _, where in read]
    parsed = _validated(layout, fields, paths)
    assert isinstance(parsed, _CompletionsIn)
    names = [p["text"] for p in paths]
    prompt, texts = _without_prompt(parsed.prompt, [c.text for c in parsed.completions], names)
    responses = [
        _response(prompt, text, model=c.model, score=c.score) for text, c in zip(texts, parsed.completions, strict=True)
    ]
    _distinct(layout, responses, tuple(names))
    return _item(parsed.id, parsed.topic, prompt, responses)


def _parallel(layout: Layout, field: str, values: Any, count: int) -> list[Any]:
    """A list column with one value per completion (distilabel's ``ratings``), or Nones where there is none."""
    column = layout.columns.get(field)
    if column is None or values is None:
        return [None] * count
    if not isinstance(values, list) or len(values) != count:
        got = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
        raise RowError(column, f"must be a list of {count} values, one per completion (got {got})")
    if field == "ratings":
        return [_rating(v, f"{column}.{i}") for i, v in enumerate(values)]
    return [_model(v, f"{column}.{i}") for i, v in enumerate(values)]


def _completion(
    layout: Layout, index: int, value: Any, rating: float | None, model: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A completion as {text, model, score}, and where each was read (the user's keys, for errors)."""
    base = f"{_printable(layout.columns['completions'])}.{index}"
    if not isinstance(value, dict):
        return {"text": value, "model": model, "score": rating}, {"text": base}
    key = next((k for k in _COMPLETION_TEXT if value.get(k) is not None), None)
    where = {"text": f"{base}.{_printable(key)}" if key else base, "model": f"{base}.model"}
    if "models" in layout.columns:
        where["model"] = f"{layout.columns['models']}.{index}"
    else:
        model = value.get("model")
    if "ratings" not in layout.columns:
        rating = _completion_rating(layout, value, base)
    return {"text": value.get(key) if key else None, "model": model, "score": rating}, where


def _completion_rating(layout: Layout, value: Mapping[str, Any], base: str) -> float | None:
    """The rating under the mapped key, or the first of the known keys that holds one."""
    if layout.rating is not None:
        found = _dig(value, layout.rating)
        return None if found is _MISSING else _rating_at(found, f"{base}.{_printable(layout.rating)}")
    for key in (*_COMPLETION_SCORE, _ANNOTATIONS):
        rating = _rating_at(value.get(key), f"{base}.{key}")
        if rating is not None:
            return rating
    return None


def _dig(value: Any, path: str) -> Any:
    """The value at a key, or at a dotted path of keys ("annotations.helpfulness.Rating"); _MISSING if absent."""
    if isinstance(value, Mapping) and path in value:
        return value[path]
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _rating_at(value: Any, where: str) -> float | None:
    """A rating, or UltraFeedback's annotations (an object of aspects): the mean of their ratings."""
    return _aspects_rating(value, where) if isinstance(value, Mapping) else _rating(value, where)


def _aspects_rating(aspects: Mapping[str, Any], where: str) -> float | None:
    """The mean of ``{aspect: {"Rating": "4", ...}}`` (an aspect may also be a list of such objects), as
    UltraFeedback's ``fine-grained_score`` is; aspects without a rating, or rated "N/A", do not count."""
    ratings = []
    for aspect, notes in aspects.items():
        for number, note in enumerate(notes if isinstance(notes, list) else [notes]):
            if isinstance(note, Mapping) and note.get("Rating") is not None:
                at = f"{where}.{_printable(aspect)}{f'.{number}' if isinstance(notes, list) else ''}.Rating"
                rating = _rating(note["Rating"], at)
                if rating is not None:
                    ratings.append(rating)
    return statistics.fmean(ratings) if ratings else None


def _rating(value: Any, where: str) -> float | None:
    """A rating as a finite number: a number or a numeric text ("4", "7.5"); null, "" and "N/A" are none."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in _NO_RATING:
            return None
        try:
            number = float(value)
        except ValueError:
            raise RowError(where, f"must be a number or a numeric text (got {value!r})") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(where, f"must be a number (got {type(value).__name__})")
    else:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    if not math.isfinite(number):  # NaN compares false both ways and would invert labels
        raise RowError(where, f"must be a finite number (got {value!r:.40})")
    return number


def _model(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(where, f"must be a text (got {type(value).__name__})")
    try:
        return _text(value)
    except ValueError as e:
        raise RowError(where, str(e)) from None


# ---- pairwise and arena: two responses, and the source's label --------------------------------------------------


def _pairwise_item(layout: Layout, fields: dict[str, Any]) -> Item:
    parsed = _validated(layout, fields)
    assert isinstance(parsed, _PairwiseIn)
    columns = layout.columns
    prompt = _hh(parsed.prompt, columns.get("prompt", "prompt"), prompt=True)
    chosen, rejected = (_hh(getattr(parsed, f), columns[f]) for f in ("chosen", "rejected"))
    prompt, chosen, rejected = _two_turns(layout, prompt, chosen, rejected, ("chosen", "rejected"))
    responses = [_response(prompt, text) for text in (chosen, rejected)]
    _distinct(layout, responses, ("chosen", "rejected"))
    return _item(parsed.id, parsed.topic, prompt, responses, label=responses[0].id, extra=(chosen, rejected))


def _arena_item(layout: Layout, parsed: _ArenaIn) -> Item:
    names = ("response_a", "response_b")
    prompt, a, b = _two_turns(layout, parsed.prompt, parsed.response_a, parsed.response_b, names)
    responses = [_response(prompt, a, model=parsed.model_a), _response(prompt, b, model=parsed.model_b)]
    _distinct(layout, responses, names)
    winner = _winner(layout, parsed.winner)
    label = None if winner is None else responses[winner].id
    return _item(parsed.id, parsed.topic, prompt, responses, label=label, extra=(a, b))


def _winner(layout: Layout, value: Any) -> int | None:
    """Which response the source prefers (0: a, 1: b), from Chatbot Arena's ``winner``; None for a tie or none."""
    if value is None:
        return None
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in _WINNERS:
        known = ", ".join(_WINNERS)
        raise RowError(layout.columns["winner"], f"{value!r:.60} is not a winner (one of {known}, or null)")
    return _WINNERS[key]


def _two_turns(layout: Layout, prompt: Any, first: Any, second: Any, names: tuple[str, str]) -> tuple[Any, Any, Any]:
    """Prompt and two responses; with no prompt, the conversations' shared opening turns are the prompt."""
    if prompt is None and "prompt" in layout.columns:
        raise RowError(layout.columns["prompt"], "must be a text or a non-empty list of {role, content} messages")
    if prompt is not None:
        prompt, (first, second) = _without_prompt(prompt, [first, second], [layout.columns[n] for n in names])
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


def _hh(value: Any, column: str, prompt: bool = False) -> Any:
    """Anthropic's HH-RLHF text ("\\n\\nHuman: ...\\n\\nAssistant: ...", or without the first "\\n\\n") as its
    turns; other values as they are. A prompt's closing empty "\\n\\nAssistant:" (the turn the responses write) is
    dropped."""
    if not isinstance(value, str) or not value.startswith(("\n\nHuman:", "Human:")) or "\n\nAssistant:" not in value:
        return value
    parts = _HH_MARK.split(value if value.startswith("\n") else f"\n\n{value}")
    turns = [{"role": _HH_ROLES[role], "content": text} for role, text in zip(parts[1::2], parts[2::2], strict=True)]
    if prompt and turns[-1]["role"] == "assistant" and files.is_blank(turns[-1]["content"]):
        turns.pop()
    try:
        return _turns(turns)
    except ValueError as e:
        raise RowError(column, str(e)) from None


# ---- responses that repeat the prompt ---------------------------------------------------------------------------


def _without_prompt(prompt: Any, texts: Sequence[Any], columns: Sequence[str]) -> tuple[Any, list[Any]]:
    """The prompt, and the responses without the opening turns that repeat it: ultrafeedback_binarized has a text
    prompt and ``chosen = [user: prompt, assistant: answer]``; kept whole, the judge would read the prompt inside
    each response and TRL would train on it twice. A text prompt repeated after shared system turns takes them
    on (they are the prompt's, not the responses'); openings that differ between responses are cut only where
    they are the prompt's turn alone."""
    if not any(isinstance(text, tuple) for text in texts):  # texts only: nothing to cut (most sources, fast)
        return prompt, list(texts)
    cuts = [_repeats(prompt, text) for text in texts]
    if isinstance(prompt, str):
        openings = {text[:cut] for text, cut in zip(texts, cuts, strict=True) if cut}
        if len(openings) > 1:
            cuts = [cut if cut == 1 else 0 for cut in cuts]
        elif openings and len(opening := next(iter(openings))) > 1:
            prompt = opening
    kept = []
    for text, cut, column in zip(texts, cuts, columns, strict=True):
        if cut and cut == len(text):
            raise RowError(column, "repeats the prompt and holds no response after it")
        kept.append(text[cut:] if cut else text)
    return prompt, kept


def _repeats(prompt: Any, text: Any) -> int:
    """How many opening turns of a conversational response repeat the prompt (0: none): the prompt's turns, or
    for a text prompt, system turns and then a user turn with the prompt's text."""
    if not isinstance(text, tuple):
        return 0
    if isinstance(prompt, tuple):
        size = len(prompt)
        same = len(text) >= size and all(_same(a, b) for a, b in zip(prompt, text[:size], strict=True))
        return size if same else 0
    for index, turn in enumerate(text):
        if turn.role == "user" and turn.content.strip() == prompt.strip():
            return index + 1
        if turn.role != "system":
            return 0
    return 0


def _same(a: Message, b: Message) -> bool:
    return a.role == b.role and a.content.strip() == b.content.strip()


# ---- items ------------------------------------------------------------------------------------------------------


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
    names = [f"responses.{i}.text" for i in range(len(parsed.responses))]
    prompt, texts = _without_prompt(parsed.prompt, [r.text for r in parsed.responses], names)
    responses = []
    for index, (r, text) in enumerate(zip(parsed.responses, texts, strict=True)):
        position = None
        if r.stance is not None:
            assert scale is not None
            if r.stance not in scale:
                raise RowError(f"responses.{index}.stance", f"{r.stance!r} is not on {scale}")
            position = _position(scale.index(r.stance), len(scale))
        responses.append(
            _response(prompt, text, id=r.id, model=r.model, score=r.score, stance=_shared(r.stance), position=position)
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
    item_id = parsed.id if parsed.id is not None else content_hash(parsed.topic, _as_text(prompt))
    return Item(
        id=item_id,
        topic=_shared(parsed.topic),
        prompt=_as_text(prompt),
        responses=tuple(responses),
        messages=_messages(prompt),
        label=parsed.label,
    )


# ---- labels: a source whose labels were not read must not pass as one without labels ----------------------------


def label_keys(layout: Layout, data: Mapping[str, Any]) -> dict[str, bool]:
    """The keys of one row that hold the source's label (``winner``; a completion's rating or the ``ratings``
    column), as the user knows them, each with whether it holds a value here."""
    if layout.name == "arena":
        column = layout.columns.get("winner")
        return {column: data.get(column) is not None} if column else {}
    if layout.name != "completions":
        return {}
    if "ratings" in layout.columns:
        column = layout.columns["ratings"]
        return {column: data.get(column) is not None}
    completions = data.get(layout.columns["completions"])
    keys = (layout.rating,) if layout.rating is not None else (*_COMPLETION_SCORE, _ANNOTATIONS)
    seen: dict[str, bool] = {}
    for completion in completions if isinstance(completions, list) else ():
        for key in keys:
            value = _dig(completion, key) if isinstance(completion, Mapping) else _MISSING
            if value is not _MISSING:
                path = f"{layout.columns['completions']}.*.{key}"
                seen[path] = seen.get(path, False) or value is not None
    return seen


def check_labels(source: str, layout: Layout, items: Iterable[Item], seen: Mapping[str, bool]) -> str | None:
    """Raise when the source has label keys (``seen``, from ``label_keys`` over its rows) and no row gives a
    value from them; a warning to print when no row states a preference; None when some row does."""
    if layout.name not in ("arena", "completions"):
        return None
    scored = False
    for item in items:
        scores = {r.score for r in item.responses if r.score is not None}
        if item.label is not None or len(scores) > 1:
            return None
        scored = scored or bool(scores)
    what = "winner" if layout.name == "arena" else "rating"
    if layout.rating is not None and not seen:
        reason = f"no completion in {source} has the key {layout.rating!r}"
        raise ConfigError("config", [("items.columns.rating", reason)])
    if seen and not (scored if what == "rating" else any(seen.values())):
        keys = list(seen)
        also = f" (nor {', '.join(keys[1:])})" if len(keys) > 1 else ""
        if what == "winner":
            reason = "no row names a winner: every value is null"
        else:
            reason = (
                f"no completion has a rating here{also}: every value is null, empty or N/A; map the key that holds "
                "one with items.columns.rating"
            )
        raise ConfigError(source, [(keys[0], reason)])
    if seen:
        return f"{source}: no row's {what} prefers one response of a pair (ties only): no source label to compare"
    looked = "a winner column" if what == "winner" else f"{', '.join((*_COMPLETION_SCORE, _ANNOTATIONS))}"
    return (
        f"{source}: no {what} found (looked for {looked}), so there is no source label to compare "
        f"(source_label_agrees stays empty); map yours with items.columns.{what}"
    )
