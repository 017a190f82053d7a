"""Load items from any source: a shipped item set, a user's file or Hub-layout folder, or a Hub dataset.

``locate`` finds the files a source names, ``rows`` reads the rows of one file (Parquet, JSONL, ``.json``, ``.csv``),
``formats`` turns each row into an Item. This module ties them together: which rows of which files to read (split
slices, and ``limit``: the first rows in source order, and nothing after them; see _segments), the format, and the
checks that span rows: unique ids, the topics filter, and that the judge can judge what was read.

polypref's own JSONL: one item per line, ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance"}]}``;
``topic`` and the stances are optional (an open item). Its flat Parquet layout (one response per row, grouped into
items by ``item_id``) is ``flat``'s.

Ids: an absent or null id means "no id": an item gets a content hash of its topic and texts, a response one of its
prompt and text. Texts are kept exactly as given, never stripped or normalised; a text that is empty or only
whitespace is refused, and so are two responses with the same text in one item (no preference to state).
"""

from __future__ import annotations

import json
import logging
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from polypref.errors import ConfigError
from polypref.items import flat, formats, labels, locate, rows
from polypref.items.config import ItemsConfig
from polypref.items.formats import FLAT_COLUMNS, RowError
from polypref.items.layout import Layout
from polypref.items.locate import ItemSource, SourceFile, locate_source
from polypref.items.rows import Row
from polypref.population.spec import SurveySpec
from polypref.records import Item

KEPT_KEY = "\x00item_id"  # the item's id in LoadedItems.kept: no source column is called so
PARQUET_COLUMNS = FLAT_COLUMNS  # the flat Parquet layout's columns (kept under the name tests and users know)
_FLAT_NAMES = {"id": "response_id", "text": "response", "stance": "stance"}  # response key -> flat column
log = logging.getLogger("polypref.items")


class Origins:
    """Where each item was read ("items.jsonl line 3", "data.json row 3 (line 5)"), held as the text around its
    numbers (shared by every row of a file) and the numbers: the text is made only when an error names an item
    (a source of 10^6 items would hold ~70 MB of these strings)."""

    _NUMBER = re.compile(r"(?<= )(?:0|[1-9][0-9]*)(?![0-9])")  # "line 3", not a file name's "train-00000"

    def __init__(self) -> None:
        self._index: dict[tuple[str, ...], int] = {}
        self._texts: list[tuple[str, ...]] = []
        self._heads: dict[str, tuple[int, list[int]]] = {}  # "FILE row" -> its text's index, its numbers
        self._text = array("L")
        self._start = array("q")
        self._numbers = array("q")

    def append(self, where: str) -> None:
        head, space, last = where.rpartition(" ")
        if space and last.isascii() and last.isdigit() and (last[0] != "0" or last == "0"):
            # "FILE row 17": every row of a file differs in its last number alone, so the rest is split once
            if head not in self._heads:
                text, numbers = self._split(f"{head} 0")
                self._heads[head] = text, numbers[:-1]
            text, numbers = self._heads[head]
            numbers = [*numbers, int(last)]
        else:
            text, numbers = self._split(where)
        self._text.append(text)
        self._start.append(len(self._numbers))
        self._numbers.extend(numbers)

    def _split(self, where: str) -> tuple[int, list[int]]:
        """The index of ``where``'s text around its numbers (kept once however many rows share it), its numbers."""
        text = tuple(self._NUMBER.split(where))
        if text not in self._index:
            self._index[text] = len(self._texts)
            self._texts.append(text)
        return self._index[text], [int(n) for n in self._NUMBER.findall(where)]

    def __len__(self) -> int:
        return len(self._text)

    def __getitem__(self, index: int) -> str:
        text, start = self._texts[self._text[index]], self._start[index]
        numbers = [str(n) for n in self._numbers[start : start + len(text) - 1]]
        return "".join(part + number for part, number in zip(text, [*numbers, ""], strict=True))


class Items(tuple[Item, ...]):
    """The items read, with where each was read and the source's columns no field read: checks made after
    reading (``check_judgeable``) name an item as the user knows it, not by a content hash."""

    origins: Origins | None = None
    unread: tuple[str, ...] = ()
    kept: pl.DataFrame | None = None  # see LoadedItems.kept


class Skipped:
    """Rows of a source left out rather than refused (``items.on_error: skip``, ``items.drop_duplicates``): each
    with where it is and why, and counts by reason: ``unreadable``, ``invalid COLUMN`` (the source's column that
    held the bad value) or ``duplicate``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str | None]] = []
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, row: str, column: str | None, reason: str) -> None:
        self.rows.append({"row": row, "kind": kind, "column": column, "reason": reason})
        # by the source's column, not the value inside it: "completions.3.score" counts as "completions.score"
        named = re.sub(r"\.[0-9]+(?=\.|$)", "", column) if column else None
        self.counts[f"{kind} {named}" if kind == "invalid" and named else kind] += 1

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class LoadedItems:
    items: tuple[Item, ...]
    source: ItemSource
    format: str
    columns: dict[str, str]  # field -> the source's column it was read from
    skipped: Skipped = field(default_factory=Skipped)
    # the source's own columns kept with each item (items.keep_columns, its prompt_id): KEPT_KEY + each, as text
    kept: pl.DataFrame | None = None


@dataclass(slots=True)
class _Record:
    """One item as read, and how to name its parts in an error message (not frozen: one is made per row, and a
    frozen dataclass takes 4 times as long to make)."""

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
    return read_items(ItemsConfig(source=source, topics=topics), spec).items


def read_items(config: ItemsConfig, spec: SurveySpec, seed: int = 0) -> LoadedItems:
    """Read, convert and check the items an ``ItemsConfig`` names; ConfigError names the file, row and column.
    ``seed`` no longer picks anything: a limit keeps the first rows (see _segments)."""
    # with a limit, a Hub source's files are fetched as their rows are read, so only those holding them come down
    located = locate_source(config.source, config.config, config.split, config.revision, config.limit is not None)
    name = _source_name(located)
    opened = _Files()
    plan = _plan(located, opened, config, name)
    columns = _columns(opened, plan)
    # Parquet names every column in its schema; other files' rows may each have other keys, so they are told from
    # the keys of every row read (a first row without responses must not make the rest prompts-only)
    parquet = all(rows.is_parquet(s.file) for s in plan)
    layout = formats.detect(name, columns, config.format, config.columns) if parquet else None
    read = _reader(located, layout, config.limit, opened, plan)
    if layout is None:
        keys = dict.fromkeys(columns)
        for record in read():  # a first pass for the keys only
            if isinstance(record.data, rows.Unreadable) and config.on_error == "fail":
                raise record.data.error  # as soon as it is met, not as a format without the columns it needs
            keys.update(dict.fromkeys(record.data if isinstance(record.data, dict) else ()))
        columns = list(keys)
        layout = formats.detect(name, columns, config.format, config.columns)
    if config.topics is not None:
        read = _on_topics(read, layout, config.topics)
    kept = _kept_columns(layout, columns, config.keep_columns)
    # polypref's own format reads every key (or refuses it); another tool's rows may hold columns no field reads
    unread = (
        ()
        if layout.name == "polypref"
        else tuple(c for c in columns if c not in layout.columns.values() and c not in kept)
    )
    skipped = Skipped()
    try:
        drops = _Drops(config.on_error == "skip", config.drop_duplicates, skipped)
        items, seen = _converted(name, layout, read, spec, len(located.files) == 1, drops, kept)
        items.unread = unread
        if not drops.duplicates:  # else no repeat is left: each was dropped as it was read
            _check_unique_ids(name, read, items)
        if config.topics is not None:
            unknown = sorted(set(config.topics) - {i.topic for i in items})
            if unknown:
                raise ConfigError("config", [("items.topics", f"no items on topics {unknown}")])
        if not items:
            left = f" ({len(skipped)} rows skipped: {_counted(skipped.counts)})" if skipped else ""
            raise ConfigError(name, [("", f"no items{left}")])
        if skipped:
            log.warning("%s: %d rows skipped (%s)", name, len(skipped), _counted(skipped.counts))
        warning = labels.check_labels(name, layout, items, seen)
        if warning:
            log.warning(warning)
    except ConfigError as e:
        if e.source == "config" or not unread:
            raise
        raise ConfigError(e.source, [*e.problems, _unread_problem(layout, unread)]) from None
    return LoadedItems(items, located, layout.name, layout.columns, skipped, items.kept)


def _kept_columns(layout: Layout, found: Sequence[str], asked: Sequence[str]) -> tuple[str, ...]:
    """The source columns kept with each item: those ``items.keep_columns`` names (each must be one of the
    source's), then the source's own ``prompt_id`` when no field reads it (ultrafeedback_binarized has one)."""
    if asked and layout.flat:
        reason = "polypref's flat Parquet layout has only its own columns, which every row publishes already"
        raise ConfigError("config", [("items.keep_columns", reason)])
    missing = [c for c in asked if c not in found]
    if missing:
        reason = f"{missing} {'is not a column' if len(missing) == 1 else 'are not columns'} of the source"
        raise ConfigError("config", [("items.keep_columns", f"{reason}; its columns: {list(found)}")])
    own = [c for c in ("prompt_id",) if c in found and c not in layout.columns.values() and layout.name != "polypref"]
    return tuple(dict.fromkeys([*asked, *own]))


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common())


@dataclass(frozen=True)
class _Drops:
    """What reading may leave out instead of refusing: bad rows (``bad``), repeated items (``duplicates``)."""

    bad: bool
    repeats: bool
    skipped: Skipped

    @property
    def duplicates(self) -> bool:
        """Whether repeats are dropped as read: asked for, or bad rows are skipped (a repeat is one)."""
        return self.bad or self.repeats


def _reader(
    located: ItemSource, layout: Layout | None, limit: int | None, opened: _Files, plan: list[_Segment]
) -> Callable[[], Iterator[_Record]]:
    """The source's records, read anew on each call (a stream), or grouped first for the flat Parquet layout."""
    if layout is not None and layout.flat:
        grouped = _flat_records(located, opened, limit)
        return lambda: iter(grouped)
    single = len(located.files) == 1
    shown = f"{located.files[0].name} "  # a single file's rows are named without it

    def read() -> Iterator[_Record]:
        # a stream, each row converted and dropped: a source of 10^6 items is never held as raw rows
        for segment in plan:
            for row in opened.segment_rows(segment):
                yield _Record(row.where.removeprefix(shown) if single else row.where, row.data)

    return read


def _converted(
    name: str,
    layout: Layout,
    read: Callable[[], Iterator[_Record]],
    spec: SurveySpec,
    single: bool,
    drops: _Drops,
    kept: Sequence[str] = (),
) -> tuple[Items, dict[str, bool]]:
    """Each record as an Item, with where it was read, and the label keys the rows hold (see
    ``labels.label_keys``): whether each ever held a value. Rows ``drops`` allows leaving out are recorded in
    ``drops.skipped`` instead of refused; the ``kept`` columns' values are gathered per item, as text."""
    items: list[Item] = []
    origins = Origins()
    seen: dict[str, bool] = {}
    first: dict[str, int] = {}  # item id -> its index, while repeats are dropped as read
    values: dict[str, list[str | None]] = {c: [] for c in kept}
    for record in read():
        where = f"{name} {record.where}" if single else record.where
        try:
            item = _item(name, layout, record, spec, kept)
        except _BadRow as e:
            if not drops.bad:
                raise e.error from None
            drops.skipped.add(e.kind, where, e.column, e.reason)
            continue
        if drops.duplicates:
            index = first.setdefault(item.id, len(items))
            if index != len(items):
                what = "the same item (prompt and responses)" if _unnamed(record) else f"item id {item.id!r}"
                drops.skipped.add("duplicate", where, None, f"{what} as at {origins[index]}")
                continue
        items.append(item)
        origins.append(where)
        for column, held in values.items():
            held.append(_as_text(record.data.get(column)) if isinstance(record.data, dict) else None)
        if isinstance(record.data, dict):
            for key, valued in labels.label_keys(layout, record.data).items():
                seen[key] = seen.get(key, False) or valued
    converted = Items(items)
    converted.origins = origins
    if kept:
        ids = pl.Series(KEPT_KEY, [i.id for i in items], dtype=pl.String)  # a kept column may be called prompt_id
        converted.kept = pl.DataFrame([ids, *(pl.Series(c, v, dtype=pl.String) for c, v in values.items())])
    return converted, seen


def _as_text(value: Any) -> str | None:
    """A kept column's value as published: a text as it is, numbers, lists and objects as JSON, other values
    (Parquet's dates, times, decimals) as their own text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, bool | int | float | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _unread_problem(layout: Layout, unread: Sequence[str]) -> tuple[str, str]:
    read = list(dict.fromkeys(layout.columns.values()))
    return (
        "columns not read",
        f"{list(unread)} (the {layout.name} format read {read}); set items.format and items.columns to read them",
    )


def _on_topics(
    read: Callable[[], Iterator[_Record]], layout: Layout, topics: list[str]
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


class _BadRow(Exception):
    """A row that cannot be an item: the error refusing it, and how a skip records it."""

    def __init__(self, error: ConfigError, kind: str, column: str | None, reason: str):
        super().__init__(str(error))
        self.error, self.kind, self.column, self.reason = error, kind, column, reason


def _item(name: str, layout: Layout, record: _Record, spec: SurveySpec, kept: Sequence[str] = ()) -> Item:
    data = record.data
    if isinstance(data, rows.Unreadable):
        raise _BadRow(data.error, "unreadable", None, data.error.problems[0][1])
    if not isinstance(data, dict):
        reason = f"expected an object, got {type(data).__name__}"
        raise _BadRow(ConfigError(name, [(record.where, reason)]), "unreadable", None, reason)
    if kept and layout.name == "polypref":  # its own format refuses unknown keys: kept ones are not unknown
        data = {k: v for k, v in data.items() if k not in kept or k in formats.POLYPREF_KEYS}
    try:
        return formats.parse(layout, data, spec)
    except RowError as e:
        reason = e.describe(record.response)
        raise _BadRow(ConfigError(name, [(record.field(e.column), reason)]), "invalid", e.column, reason) from None


def _unnamed(record: _Record) -> bool:
    """Whether the row gave no id of its own (its item is known by its texts)."""
    return isinstance(record.data, dict) and record.data.get("id") is None


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
        also = ", ".join(others[:5])
        reason = (  # a content hash means nothing to the user: name the rows, and what makes them one item
            f"the same item (prompt and responses) is at {also} too; an item without an id is known by its texts: "
            "drop the repeat, or give each an id"
            if hashed
            else f"item id {item.id!r} is used again at {also}"
        )
        raise ConfigError(name, [(f"{first.where}: id", reason)])


def check_judgeable(items: tuple[Item, ...], backend: str, source: str) -> None:
    """Refuse, before any work, items nothing can judge: prompts without responses, and for the simulated judge
    (which decides from stances) items without a topic and stances. Items as ``read_items`` gave them are named
    by file and row; others by id."""
    bare = [index for index, i in enumerate(items) if len(i.responses) < 2]
    if bare:
        reason = (
            f"has a prompt but no responses to judge ({len(bare)} of {len(items)} items): give each prompt at least "
            "two responses (formats: polypref, pairwise, completions, arena), or have them generated (README: "
            "generating responses)"
        )
        raise ConfigError(source, [(_named(items, bare[0]), reason), *_unread(items)])
    if backend != "simulated":
        return
    open_items = [index for index, i in enumerate(items) if not i.annotated]
    if open_items:
        what = "no topic" if items[open_items[0]].topic is None else "responses without a stance"
        reason = (
            f"has {what} ({len(open_items)} of {len(items)} items are open); the simulated judge decides from "
            "stances on the survey's answer scales: annotate the items (polypref annotate) or judge with an LLM "
            "backend (judge.backend: vllm or openai)"
        )
        raise ConfigError(source, [(_named(items, open_items[0]), reason), *_unread(items)])


def _named(items: tuple[Item, ...], index: int) -> str:
    """How an error names an item: the file and line or row it was read from, else its id."""
    origins = getattr(items, "origins", None)
    if origins is not None and index < len(origins):
        return f"item at {origins[index]}"
    return f"item {items[index].id}"


def _unread(items: tuple[Item, ...]) -> list[tuple[str, str]]:
    """The source's columns no field read, as a last problem: the labels or texts the user expected may be there."""
    unread = getattr(items, "unread", ())
    return [("columns not read", f"{list(unread)}: set items.format and items.columns to read them")] if unread else []


# ---- what to read: split slices, the limit, Hub files fetched as read ---------------------------------------


@dataclass(frozen=True)
class _Segment:
    """Rows [start, stop) of one file; stop None: to its end."""

    file: SourceFile
    start: int = 0
    stop: int | None = None


def _plan(located: ItemSource, opened: _Files, config: ItemsConfig, name: str) -> list[_Segment]:
    plan = list(_segments(located, opened, config.limit))
    if not plan:
        sliced = any(part.term.sliced for part in located.parts)
        if sliced:
            raise ConfigError("config", [("items.split", f"{config.split!r} selects no rows of {name}")])
        raise ConfigError(name, [("", "no items")])
    return plan


def _segments(located: ItemSource, opened: _Files, limit: int | None) -> Iterator[_Segment]:
    """What to read, in source order (files as listed, rows in file order): each split term's slice of its files,
    then only the first ``limit`` rows.

    The first rows rather than a seeded draw over all of them: a source that grows (rows appended, files added
    after the others) keeps the rows chosen before, as a persona sample keeps its first personas, and nothing
    past the limit is read or downloaded. A file's rows are counted (a Parquet footer; any other file is read
    through) only where a slice or the limit needs it."""
    left = limit
    for part in located.parts:
        total = sum(opened.count(f) for f in part.files) if part.term.needs_total else None
        start, stop = part.term.bounds(total)
        offset = 0
        for f in part.files:
            if left == 0 or (stop is not None and offset >= stop):
                break
            if left is None and stop is None and start <= offset:
                yield _Segment(f)  # the rest of the split, whole: nothing to count
                continue
            n = opened.count(f)
            lo, hi = max(start - offset, 0), n if stop is None else min(stop - offset, n)
            if left is not None:
                hi = min(hi, lo + left)
            if lo < hi:
                yield _Segment(f, lo, None if lo == 0 and hi == n else hi)
                left = None if left is None else left - (hi - lo)
            offset += n


def _columns(opened: _Files, plan: list[_Segment]) -> list[str]:
    """The schema columns of the Parquet files to read, first seen first (other files' keys come from their rows)."""
    names: dict[str, None] = {}
    for segment in plan:
        if rows.is_parquet(segment.file):
            names.update(dict.fromkeys(opened.parquet(segment.file).schema_arrow.names))
    return list(names)


def _flat_records(located: ItemSource, opened: _Files, limit: int | None) -> list[_Record]:
    """polypref's flat Parquet layout grouped into items file by file (whole files: an item's rows may span row
    groups); with a limit, the first ``limit`` items, reading files only until they are found."""
    several = len(located.files) > 1
    records: list[_Record] = []
    for segment in _segments(located, opened, None):
        shown = _file_name(located, segment.file)
        path = opened.local(segment.file).path
        found = flat.read_flat_parquet(path, shown, several, segment.start, segment.stop)
        records += [_Record(*item) for item in found]
        if limit is not None and len(records) >= limit:
            break
    return records[:limit]


class _Files:
    """A source's files, opened as their rows are read: a Hub file is downloaded into huggingface_hub's cache only
    then, or, a large Parquet file, read in place (its footer and the row groups holding the rows read); a
    footer is read, and a file counted, once however often its rows are read."""

    def __init__(self) -> None:
        self._local: dict[SourceFile, SourceFile] = {}
        self._parquet: dict[SourceFile, Any] = {}
        self._counts: dict[SourceFile, int] = {}

    def local(self, f: SourceFile) -> SourceFile:
        if f not in self._local:
            self._local[f] = locate.fetch(f)
        return self._local[f]

    def parquet(self, f: SourceFile) -> Any:
        """The open pyarrow ParquetFile (footer read)."""
        if f not in self._parquet:
            self._parquet[f] = rows.open_parquet(f, None if locate.reads_in_place(f) else self.local(f))
        return self._parquet[f]

    def count(self, f: SourceFile) -> int:
        if f not in self._counts:
            if rows.is_parquet(f):
                self._counts[f] = rows.count_rows(f, self.parquet(f))
            else:
                self._counts[f] = rows.count_rows(self.local(f))  # JSONL: its lines, not parsed
        return self._counts[f]

    def segment_rows(self, segment: _Segment) -> Iterator[Row]:
        f = segment.file
        if rows.is_parquet(f):  # only the row groups holding the segment's rows, from the footer already read
            return rows.read_rows(f, segment.start, segment.stop, self.parquet(f))
        return rows.read_rows(self.local(f), segment.start, segment.stop)
