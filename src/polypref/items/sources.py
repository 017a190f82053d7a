"""Load items: a shipped item set (data/items/NAME.jsonl) or user files.

JSONL: one item per line, ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance"}, ...]}``.
The file must be UTF-8 (a leading byte-order mark is ignored). Lines end at "\\n" only (a "\\r" before it is
dropped), as JSON Lines says, so U+2028, U+0085 and other Unicode line breaks inside a JSON string stay text;
lines of only spaces and tabs are skipped. A key twice in one object is an error, not "the last one wins".

Parquet: one response per row, columns ``item_id, topic, prompt, response_id, response, stance`` (no others).
Rows are grouped into items by ``item_id``, so ``item_id`` is required: a null is refused, and all rows of an
item must give the same topic and prompt. Errors name rows by index from 0, as polars and pandas show them.

Ids: an absent or null ``id`` (JSONL) or a null ``response_id`` (Parquet) means "no id": the item gets a content
hash of its topic and prompt, the response one of its prompt and text. A given id must not be blank.

Texts (prompts and responses) are kept exactly as given, never stripped or normalised; a text that is empty or
only whitespace is refused, and so are two responses with the same text in one item (a pair of identical texts
is no preference). ``stance`` is a label on the topic's answer scale in the population spec.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from polypref import assets, files
from polypref.errors import ConfigError
from polypref.items import jsonl
from polypref.population.spec import SurveySpec
from polypref.records import Item, Response, content_hash

PARQUET_COLUMNS = ("item_id", "topic", "prompt", "response_id", "response", "stance")
SUFFIXES = (".jsonl", ".parquet")
_PARQUET_NAMES = {"id": "response_id", "text": "response", "stance": "stance"}  # JSONL response key -> column


def _text(value: str) -> str:
    if files.is_blank(value):
        raise ValueError("must not be empty, whitespace or invisible characters only")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\\ud800" decodes to a lone surrogate, which no UTF-8 file can store
        raise ValueError("holds an unpaired surrogate (a \\ud800-\\udfff escape), which is not Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_text)]


class _ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Text | None = None
    text: Text
    stance: str


class _ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Text | None = None
    topic: str
    prompt: Text
    responses: list[_ResponseIn] = Field(min_length=2)


@dataclass(frozen=True)
class _Record:
    """One item as read, and how to name its parts in an error message."""

    where: str  # "line 3" or "item_id 'q1'"
    data: Any
    rows: tuple[int, ...] = ()  # Parquet: the row of each response

    def field(self, loc: tuple[int | str, ...]) -> str:
        if self.rows and len(loc) >= 2 and loc[0] == "responses" and isinstance(loc[1], int):
            column = _PARQUET_NAMES.get(str(loc[2]), _name(loc[2])) if len(loc) > 2 else "response"
            return f"{self.where}, row {self.rows[loc[1]]}: {column}"
        if self.rows and loc == ("id",):
            return f"{self.where}: item_id"
        return ": ".join([self.where, ".".join(map(_name, loc))]) if loc else self.where

    def response(self, index: int) -> str:
        return f"row {self.rows[index]}" if self.rows else f"responses.{index}"


def _name(part: int | str) -> str:
    """A key from the user's file as it may be printed: an unknown key can hold control characters or surrogates."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def resolve_items_path(source: str) -> Path:
    """A shipped item set by name (data/items/NAME.jsonl) or a path to a .jsonl or .parquet file."""
    if Path(source).suffix.lower() in SUFFIXES:
        return Path(source)
    return assets.path("data", "items", f"{source}.jsonl")


def load_items(source: str, spec: SurveySpec, topics: list[str] | None = None) -> tuple[Item, ...]:
    """Read items and check them against the spec's topics and scales; ConfigError names file and line."""
    path = resolve_items_path(source)
    if Path(source).suffix.lower() not in ("", *SUFFIXES) and Path(source).is_file():  # a user file, not a shipped name
        raise ConfigError(source, [("", f"items must be a {' or '.join(SUFFIXES)} file")])
    if not path.exists() and not path.is_symlink():
        shipped = sorted(p.stem for p in assets.path("data", "items").glob("*.jsonl"))
        raise ConfigError(str(path), [("", f"items file not found (shipped item sets: {shipped})")])
    raw = _read_jsonl(path) if path.suffix.lower() == ".jsonl" else _read_parquet(path)
    items = [_validate(path, record, spec) for record in raw]
    _check_unique_ids(path, raw, items)
    if topics is not None:
        unknown = sorted(set(topics) - {i.topic for i in items})
        if unknown:
            raise ConfigError("config", [("items.topics", f"no items on topics {unknown}")])
        items = [i for i in items if i.topic in topics]
    if not items:
        raise ConfigError(str(path), [("", "no items")])
    return tuple(items)


def _check_unique_ids(path: Path, raw: list[_Record], items: list[Item]) -> None:
    counts = Counter(i.id for i in items)  # linear: item files can hold many thousands of items
    repeated = [(record, item) for record, item in zip(raw, items, strict=True) if counts[item.id] > 1]
    if repeated:
        first, item = repeated[0]
        others = [r.where for r, i in repeated[1:] if i.id == item.id]
        hashed = any(isinstance(r.data, dict) and r.data.get("id") is None for r, i in repeated if i.id == item.id)
        why = " (an item without an id gets a hash of its topic and prompt)" if hashed else ""
        also = ", ".join(others[:5])
        raise ConfigError(str(path), [(f"{first.where}: id", f"item id {item.id!r} is used again at {also}{why}")])


def _read_jsonl(path: Path) -> list[_Record]:
    return [_Record(f"line {number}", data) for number, data in jsonl.records(files.read_text(path), str(path))]


def _read_parquet(path: Path) -> list[_Record]:
    files.check_file(path)
    try:
        frame = pl.read_parquet(path)
    except Exception as e:
        raise ConfigError(str(path), [("", f"cannot read Parquet: {e}")]) from None
    missing = [c for c in PARQUET_COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in PARQUET_COLUMNS]
    if missing or extra:
        wrong = ", ".join(
            f"{what} columns {names}" for what, names in (("missing", missing), ("unknown", extra)) if names
        )
        raise ConfigError(str(path), [("", f"{wrong}; expected exactly {list(PARQUET_COLUMNS)}")])
    frame = frame.select(_parquet_column(path, frame, c) for c in PARQUET_COLUMNS).with_row_index("_row")
    no_id = frame.filter(pl.col("item_id").is_null())["_row"].to_list()
    if no_id:
        raise ConfigError(
            str(path),
            [("item_id", f"{len(no_id)} rows have no item_id (rows {no_id[:10]}); it groups rows into items")],
        )
    _check_consistent_items(path, frame)
    records = []
    for (item_id,), group in frame.group_by("item_id", maintain_order=True):
        first = group.row(0, named=True)
        responses = [
            {"id": r["response_id"], "text": r["response"], "stance": r["stance"]} for r in group.iter_rows(named=True)
        ]
        data = {"id": item_id, "topic": first["topic"], "prompt": first["prompt"], "responses": responses}
        records.append(_Record(f"item_id {item_id!r}", data, tuple(group["_row"].to_list())))
    return records


def _parquet_column(path: Path, frame: pl.DataFrame, name: str) -> pl.Expr:
    """Text columns as text; ids may also be integers (read as their decimal text), never floats or bytes."""
    dtype = frame[name].dtype
    ids = name in ("item_id", "response_id")
    if dtype in (pl.String, pl.Null) or isinstance(dtype, pl.Categorical | pl.Enum) or (ids and dtype.is_integer()):
        return pl.col(name).cast(pl.String)
    expected = "text or integers" if ids else "text"
    raise ConfigError(str(path), [(name, f"column holds {dtype}, expected {expected}")])


def _check_consistent_items(path: Path, frame: pl.DataFrame) -> None:
    """An item's topic and prompt are repeated on each of its rows: rows that disagree are two items under one
    id, and keeping the first row's would silently drop the others."""
    counts = frame.group_by("item_id", maintain_order=True).agg(
        pl.col("topic").n_unique(), pl.col("prompt").n_unique(), pl.col("_row")
    )
    problems = [
        (f"item_id {item_id!r}: {column}", f"rows {rows[:10]} give {n} different values; an item has one {column}")
        for item_id, topics, prompts, rows in counts.iter_rows()
        for column, n in (("topic", topics), ("prompt", prompts))
        if n > 1
    ]
    if problems:
        raise ConfigError(str(path), problems[:10])


def _validate(path: Path, record: _Record, spec: SurveySpec) -> Item:
    try:
        parsed = _ItemIn.model_validate(record.data)
    except ValidationError as e:
        raise ConfigError(
            str(path), [(record.field(err["loc"]), err["msg"].removeprefix("Value error, ")) for err in e.errors()]
        ) from None
    if parsed.topic not in spec.attitudes.items:
        raise ConfigError(
            str(path),
            [
                (
                    record.field(("topic",)),
                    f"{parsed.topic!r} is not a topic of population spec {spec.name} "
                    f"(topics: {sorted(spec.attitudes.items)})",
                )
            ],
        )
    scale = spec.scale(parsed.topic)
    responses = []
    for index, r in enumerate(parsed.responses):
        if r.stance not in scale:
            raise ConfigError(
                str(path), [(record.field(("responses", index, "stance")), f"{r.stance!r} is not on {scale}")]
            )
        responses.append(
            Response(
                id=r.id if r.id is not None else content_hash(parsed.prompt, r.text),
                text=r.text,
                stance=r.stance,
                position=scale.index(r.stance) / (len(scale) - 1),
            )
        )
    _check_distinct(path, record, [r.text for r in responses], "the same text")
    _check_distinct(path, record, [r.id for r in responses], "the same id")
    return Item(
        id=parsed.id if parsed.id is not None else content_hash(parsed.topic, parsed.prompt),
        topic=parsed.topic,
        prompt=parsed.prompt,
        responses=tuple(responses),
    )


def _check_distinct(path: Path, record: _Record, values: list[str], what: str) -> None:
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first:
            both = f"{record.response(first[value])} and {record.response(index)}"
            raise ConfigError(str(path), [(f"{record.where}: responses", f"{both} have {what}")])
        first[value] = index
