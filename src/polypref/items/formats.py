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
texts are checked and become an Item is ``texts``'; reading the source's labels, ``labels``'; each format's row
model and its conversion, ``convert``'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from polypref.errors import ConfigError
from polypref.items.convert import arena_item, completions_item, pairwise_item, polypref_item, prompt_item
from polypref.items.layout import Layout
from polypref.items.texts import RowError
from polypref.population.spec import SurveySpec
from polypref.records import Item

__all__ = [
    "ALIASES",
    "FLAT_COLUMNS",
    "FORMATS",
    "FORMAT_OPTIONAL",
    "KEYS",
    "OPTIONAL",
    "REQUIRED",
    "FormatName",
    "RowError",
    "detect",
    "parse",
]

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
        return polypref_item(layout, {field_of.get(k, k): v for k, v in data.items()}, spec)
    # another tool's rows: the columns the format reads, whatever else the source holds
    fields = {f: data.get(c) for f, c in layout.columns.items()}
    if layout.name == "completions":
        return completions_item(layout, fields)
    if layout.name == "pairwise":
        return pairwise_item(layout, fields)
    if layout.name == "arena":
        return arena_item(layout, fields)
    return prompt_item(layout, fields)
