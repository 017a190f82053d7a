"""Load items from any source: a shipped item set, a user's file or Hub-layout folder, or a Hub dataset.

``locate`` finds the files a source names, ``rows`` reads them (a seeded ``limit`` reads only the rows it keeps),
``formats`` turns each row into an Item. This module ties them together and checks what spans rows: unique ids,
the topics filter, and that the judge can judge what was read.

polypref's own JSONL: one item per line, ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance"}]}``;
``topic`` and the stances are optional (an open item). Its flat Parquet layout has one response per row, columns
``item_id, topic, prompt, response_id, response, stance`` (no others), grouped into items by ``item_id`` (required;
all rows of an item give the same topic and prompt); errors name those rows by index from 0.

Ids: an absent or null id means "no id": an item gets a content hash of its topic and texts, a response one of its
prompt and text. Texts are kept exactly as given, never stripped or normalised; a text that is empty or only
whitespace is refused, and so are two responses with the same text in one item (no preference to state).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from polypref import files
from polypref.errors import ConfigError
from polypref.items import formats
from polypref.items.formats import FLAT_COLUMNS, RowError
from polypref.items.locate import ItemSource, SourceFile, locate_source
from polypref.items.rows import LIMIT_STREAM, iter_rows, source_columns
from polypref.population.spec import SurveySpec
from polypref.records import Item

if TYPE_CHECKING:
    from polypref.config import ItemsConfig

PARQUET_COLUMNS = FLAT_COLUMNS  # the flat Parquet layout's columns (kept under the name tests and users know)
_FLAT_NAMES = {"id": "response_id", "text": "response", "stance": "stance"}  # response key -> flat column


@dataclass(frozen=True)
class LoadedItems:
    items: tuple[Item, ...]
    source: ItemSource
    format: str
    columns: dict[str, str]  # field -> the source's column it was read from


@dataclass(frozen=True)
class _Record:
    """One item as read, and how to name its parts in an error message."""

    where: str  # "line 3", "data/train.parquet row 7" or "item_id 'q1'"
    data: Any
    rows: tuple[int, ...] = ()  # flat Parquet: the row of each response

    def field(self, column: str) -> str:
        parts = column.split(".")
        if self.rows and parts[0] == "responses" and len(parts) > 1 and parts[1].isdigit():
            name = _FLAT_NAMES.get(parts[2], parts[2]) if len(parts) > 2 else "response"
            return f"{self.where}, row {self.rows[int(parts[1])]}: {name}"
        if self.rows and column == "responses":
            return f"{self.where}: responses"
        if self.rows and column == "id":
            return f"{self.where}: item_id"
        return f"{self.where}: {column}"

    def response(self, index: int) -> str:
        return f"row {self.rows[index]}" if self.rows else f"responses.{index}"


def load_items(source: str, spec: SurveySpec, topics: list[str] | None = None) -> tuple[Item, ...]:
    """The items of a source named by a string alone (a shipped set, a file or a folder), all of them."""
    from polypref.config import ItemsConfig

    return read_items(ItemsConfig(source=source, topics=topics), spec).items


def read_items(config: ItemsConfig, spec: SurveySpec, seed: int = 0) -> LoadedItems:
    """Read, convert and check the items an ``ItemsConfig`` names; ConfigError names the file, row and column."""
    located = locate_source(config.source, config.config, config.split, config.revision)
    name = _source_name(located)
    columns = source_columns(located.files)
    # Parquet names every column in its schema; JSONL rows may each have other keys, so JSONL is told from the
    # keys of every row read (a first row without responses must not make the rest prompts-only)
    parquet = all(f.path.suffix.lower() == ".parquet" for f in located.files)
    layout = formats.detect(name, columns, config.format, config.columns) if parquet else None
    read: Callable[[], Iterator[_Record]]
    if layout is not None and layout.flat:
        # grouped rows can only be sampled as items once read: this layout is read whole, limit or not
        several = len(located.files) > 1
        grouped = [r for f in located.files for r in _read_flat_parquet(f.path, _file_name(located, f), several)]
        grouped = _sample(grouped, config.limit, seed)

        def read() -> Iterator[_Record]:
            return iter(grouped)
    else:
        single = len(located.files) == 1

        def read() -> Iterator[_Record]:
            # a stream, each row converted and dropped: a source of 10^6 items is never held as raw rows
            for row in iter_rows(located.files, config.limit, seed):
                yield _Record(row.where.removeprefix(f"{located.files[0].name} ") if single else row.where, row.data)

        if layout is None:
            keys = dict.fromkeys(columns)
            for record in read():  # a first pass for the keys only
                keys.update(dict.fromkeys(record.data if isinstance(record.data, dict) else ()))
            layout = formats.detect(name, list(keys), config.format, config.columns)
    if config.topics is not None:
        read = _on_topics(read, layout, config.topics)
    items = [_item(name, layout, record, spec) for record in read()]
    _check_unique_ids(name, read, items)
    if config.topics is not None:
        unknown = sorted(set(config.topics) - {i.topic for i in items})
        if unknown:
            raise ConfigError("config", [("items.topics", f"no items on topics {unknown}")])
    if not items:
        raise ConfigError(name, [("", "no items")])
    return LoadedItems(tuple(items), located, layout.name, layout.columns)


def _on_topics(
    read: Callable[[], Iterator[_Record]], layout: formats.Layout, topics: list[str]
) -> Callable[[], Iterator[_Record]]:
    """The records on ``topics``, told by their topic before they are converted: a row the filter leaves out is
    never checked against the population spec, which need not have an item on its topic. A row that is not an
    object is kept, to be refused as one."""
    column = layout.columns.get("topic")

    def kept() -> Iterator[_Record]:
        for record in read():
            data = record.data
            if not isinstance(data, dict) or (column is not None and data.get(column) in topics):
                yield record

    return kept


def _source_name(located: ItemSource) -> str:
    """How errors name the source: its one file, or the source as given."""
    return _file_name(located, located.files[0]) if len(located.files) == 1 else located.provenance.get("source") or ""


def _file_name(located: ItemSource, file: SourceFile) -> str:
    """How errors name one file of a source: as the user gave it, or inside a Hub repo with the repo."""
    return f"{located.provenance.get('source')}/{file.name}" if located.kind == "hub" else file.name


def _sample(records: list[_Record], limit: int | None, seed: int) -> list[_Record]:
    if limit is None or limit >= len(records):
        return records
    rng = np.random.default_rng([seed, LIMIT_STREAM, len(records)])  # the stream rows.read_rows samples from
    keep = np.sort(rng.choice(len(records), size=limit, replace=False))
    return [records[i] for i in keep]


def _item(name: str, layout: formats.Layout, record: _Record, spec: SurveySpec) -> Item:
    if not isinstance(record.data, dict):
        raise ConfigError(name, [(record.where, f"expected an object, got {type(record.data).__name__}")])
    try:
        return formats.parse(layout, record.data, spec)
    except RowError as e:
        raise ConfigError(name, [(record.field(e.column), e.describe(record.response))]) from None


def _check_unique_ids(name: str, records: Callable[[], Iterator[_Record]], items: list[Item]) -> None:
    counts = Counter(i.id for i in items)  # linear: item files can hold many thousands of items
    if all(n == 1 for n in counts.values()):
        return
    # rare: read the rows again to name where each repeat is
    repeated = [(record, item) for record, item in zip(records(), items, strict=True) if counts[item.id] > 1]
    if repeated:
        first, item = repeated[0]
        others = [r.where for r, i in repeated[1:] if i.id == item.id]
        hashed = any(isinstance(r.data, dict) and r.data.get("id") is None for r, i in repeated if i.id == item.id)
        why = " (an item without an id gets a content hash of its texts)" if hashed else ""
        also = ", ".join(others[:5])
        raise ConfigError(name, [(f"{first.where}: id", f"item id {item.id!r} is used again at {also}{why}")])


def check_judgeable(items: tuple[Item, ...], backend: str, source: str) -> None:
    """Refuse, before any work, items nothing can judge: prompts without responses, and for the simulated judge
    (which decides from stances) items without a topic and stances."""
    bare = [i for i in items if len(i.responses) < 2]
    if bare:
        raise ConfigError(
            source,
            [
                (
                    f"item {bare[0].id}",
                    f"has a prompt but no responses to judge ({len(bare)} of {len(items)} items): give each prompt "
                    "at least two responses (formats: polypref, pairwise, completions), or have them generated "
                    "(README: generating responses)",
                )
            ],
        )
    if backend != "simulated":
        return
    open_items = [i for i in items if not i.annotated]
    if open_items:
        first = open_items[0]
        what = "no topic" if first.topic is None else "responses without a stance"
        raise ConfigError(
            source,
            [
                (
                    f"item {first.id}",
                    f"has {what} ({len(open_items)} of {len(items)} items are open); the simulated judge "
                    "decides from stances on the survey's answer scales: annotate the items (polypref annotate) "
                    "or judge with an LLM backend (judge.backend: vllm or openai)",
                )
            ],
        )


def _read_flat_parquet(path: Path, shown: str, several: bool) -> list[_Record]:
    """``shown``: how errors name the file; ``several``: the source has other files, so rows name theirs."""
    files.check_file(path)
    try:
        frame = pl.read_parquet(path)
    except Exception as e:
        raise ConfigError(shown, [("", f"cannot read Parquet: {e}")]) from None
    missing = [c for c in FLAT_COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in FLAT_COLUMNS]
    if missing or extra:
        wrong = ", ".join(
            f"{what} columns {names}" for what, names in (("missing", missing), ("unknown", extra)) if names
        )
        raise ConfigError(shown, [("", f"{wrong}; expected exactly {list(FLAT_COLUMNS)}")])
    frame = frame.select(_parquet_column(shown, frame, c) for c in FLAT_COLUMNS).with_row_index("_row")
    no_id = frame.filter(pl.col("item_id").is_null())["_row"].to_list()
    if no_id:
        raise ConfigError(
            shown,
            [("item_id", f"{len(no_id)} rows have no item_id (rows {no_id[:10]}); it groups rows into items")],
        )
    _check_consistent_items(shown, frame)
    records = []
    for (item_id,), group in frame.group_by("item_id", maintain_order=True):
        first = group.row(0, named=True)
        responses = [
            {"id": r["response_id"], "text": r["response"], "stance": r["stance"]} for r in group.iter_rows(named=True)
        ]
        data = {"id": item_id, "topic": first["topic"], "prompt": first["prompt"], "responses": responses}
        where = f"{shown}: item_id {item_id!r}" if several else f"item_id {item_id!r}"
        records.append(_Record(where, data, tuple(group["_row"].to_list())))
    return records


def _parquet_column(shown: str, frame: pl.DataFrame, name: str) -> pl.Expr:
    """Text columns as text; ids may also be integers (read as their decimal text), never floats or bytes."""
    dtype = frame[name].dtype
    ids = name in ("item_id", "response_id")
    if dtype in (pl.String, pl.Null) or isinstance(dtype, pl.Categorical | pl.Enum) or (ids and dtype.is_integer()):
        return pl.col(name).cast(pl.String)
    expected = "text or integers" if ids else "text"
    raise ConfigError(shown, [(name, f"column holds {dtype}, expected {expected}")])


def _check_consistent_items(shown: str, frame: pl.DataFrame) -> None:
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
        raise ConfigError(shown, problems[:10])
