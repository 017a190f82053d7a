"""The source's own preference, where it states one: ratings of completions (UltraFeedback, distilabel) and
Chatbot Arena's winner; and the check that a source whose labels were not read does not pass as one without.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from polypref.errors import ConfigError
from polypref.items.texts import RowError, check_text, printable
from polypref.records import Item

if TYPE_CHECKING:
    from polypref.items.layout import Layout

_COMPLETION_TEXT = ("response", "text", "content")
_COMPLETION_SCORE = ("overall_score", "score", "rating", "fine-grained_score")
_ANNOTATIONS = "annotations"  # UltraFeedback: {aspect: {"Rating": "4", "Rationale": ...}}
_NO_RATING = frozenset({"", "n/a", "na", "none", "null"})
_WINNERS: dict[str, int | None] = {"model_a": 0, "a": 0, "model_b": 1, "b": 1, "tie": None, "tie (bothbad)": None}
_MISSING = object()


# ---- completions: texts, models and ratings under the source's own keys ---------------------------------------


def parallel_values(layout: Layout, field: str, values: Any, count: int) -> list[Any]:
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


def completion_fields(
    layout: Layout, index: int, value: Any, rating: float | None, model: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A completion as {text, model, score}, and where each was read (the user's keys, for errors)."""
    base = f"{printable(layout.columns['completions'])}.{index}"
    if not isinstance(value, dict):
        return {"text": value, "model": model, "score": rating}, {"text": base}
    key = next((k for k in _COMPLETION_TEXT if value.get(k) is not None), None)
    where = {"text": f"{base}.{printable(key)}" if key else base, "model": f"{base}.model"}
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
        return None if found is _MISSING else _rating_at(found, f"{base}.{printable(layout.rating)}")
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
                at = f"{where}.{printable(aspect)}{f'.{number}' if isinstance(notes, list) else ''}.Rating"
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
        return check_text(value)
    except ValueError as e:
        raise RowError(where, str(e)) from None


def winner_index(layout: Layout, value: Any) -> int | None:
    """Which response the source prefers (0: a, 1: b), from Chatbot Arena's ``winner``; None for a tie or none."""
    if value is None:
        return None
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in _WINNERS:
        known = ", ".join(_WINNERS)
        raise RowError(layout.columns["winner"], f"{value!r:.60} is not a winner (one of {known}, or null)")
    return _WINNERS[key]


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
