"""Load items from any source: a shipped item set, a user's file or Hub-layout folder, or a Hub dataset.

``locate`` finds the files a source names, ``rows`` and the readers here read them (``limit``: the first rows in
source order, and nothing after them; see _segments), ``formats`` turns each row into an Item. This module ties
them together and checks what spans rows: unique ids, the topics filter, and that the judge can judge what was
read. Besides ``rows``' JSONL and Parquet, it reads ``.json`` (a JSON array of objects, or JSON Lines) and
``.csv`` (text cells under a header) data files.

polypref's own JSONL: one item per line, ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance"}]}``;
``topic`` and the stances are optional (an open item). Its flat Parquet layout has one response per row, columns
``item_id, topic, prompt, response_id, response, stance`` (no others), grouped into items by ``item_id`` (required;
all rows of an item give the same topic and prompt); errors name those rows by index from 0.

Ids: an absent or null id means "no id": an item gets a content hash of its topic and texts, a response one of its
prompt and text. Texts are kept exactly as given, never stripped or normalised; a text that is empty or only
whitespace is refused, and so are two responses with the same text in one item (no preference to state).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from polypref import files
from polypref.errors import ConfigError
from polypref.items import formats, jsonl, locate
from polypref.items.formats import FLAT_COLUMNS, RowError
from polypref.items.locate import ItemSource, SourceFile, locate_source
from polypref.items.rows import BATCH_ROWS, Row, count_rows, iter_rows
from polypref.population.spec import SurveySpec
from polypref.records import Item

if TYPE_CHECKING:
    from polypref.config import ItemsConfig

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
        self._text = array("L")
        self._start = array("q")
        self._numbers = array("q")

    def append(self, where: str) -> None:
        text = tuple(self._NUMBER.split(where))
        if text not in self._index:
            self._index[text] = len(self._texts)
            self._texts.append(text)
        self._text.append(self._index[text])
        self._start.append(len(self._numbers))
        self._numbers.extend(int(n) for n in self._NUMBER.findall(where))

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
    parquet = all(_is_parquet(s.file) for s in plan)
    layout = formats.detect(name, columns, config.format, config.columns) if parquet else None
    read = _reader(located, layout, config.limit, opened, plan)
    if layout is None:
        keys = dict.fromkeys(columns)
        for record in read():  # a first pass for the keys only
            keys.update(dict.fromkeys(record.data if isinstance(record.data, dict) else ()))
        columns = list(keys)
        layout = formats.detect(name, columns, config.format, config.columns)
    if config.topics is not None:
        read = _on_topics(read, layout, config.topics)
    # polypref's own format reads every key (or refuses it); another tool's rows may hold columns no field reads
    unread = () if layout.name == "polypref" else tuple(c for c in columns if c not in layout.columns.values())
    try:
        items, seen = _converted(name, layout, read, spec, len(located.files) == 1)
        items.unread = unread
        _check_unique_ids(name, read, items)
        if config.topics is not None:
            unknown = sorted(set(config.topics) - {i.topic for i in items})
            if unknown:
                raise ConfigError("config", [("items.topics", f"no items on topics {unknown}")])
        if not items:
            raise ConfigError(name, [("", "no items")])
        warning = formats.check_labels(name, layout, items, seen)
        if warning:
            log.warning(warning)
    except ConfigError as e:
        if e.source == "config" or not unread:
            raise
        raise ConfigError(e.source, [*e.problems, _unread_problem(layout, unread)]) from None
    return LoadedItems(items, located, layout.name, layout.columns)


def _reader(
    located: ItemSource, layout: formats.Layout | None, limit: int | None, opened: _Files, plan: list[_Segment]
) -> Callable[[], Iterator[_Record]]:
    """The source's records, read anew on each call (a stream), or grouped first for the flat Parquet layout."""
    if layout is not None and layout.flat:
        grouped = _flat_records(located, opened, limit)
        return lambda: iter(grouped)
    single = len(located.files) == 1

    def read() -> Iterator[_Record]:
        # a stream, each row converted and dropped: a source of 10^6 items is never held as raw rows
        for segment in plan:
            for row in opened.rows(segment):
                yield _Record(row.where.removeprefix(f"{located.files[0].name} ") if single else row.where, row.data)

    return read


def _converted(
    name: str, layout: formats.Layout, read: Callable[[], Iterator[_Record]], spec: SurveySpec, single: bool
) -> tuple[Items, dict[str, bool]]:
    """Each record as an Item, with where it was read, and the label keys the rows hold (see
    ``formats.label_keys``): whether each ever held a value."""
    items: list[Item] = []
    origins = Origins()
    seen: dict[str, bool] = {}
    for record in read():
        items.append(_item(name, layout, record, spec))
        origins.append(f"{name} {record.where}" if single else record.where)
        if isinstance(record.data, dict):
            for key, valued in formats.label_keys(layout, record.data).items():
                seen[key] = seen.get(key, False) or valued
    converted = Items(items)
    converted.origins = origins
    return converted, seen


def _unread_problem(layout: formats.Layout, unread: Sequence[str]) -> tuple[str, str]:
    read = list(dict.fromkeys(layout.columns.values()))
    return (
        "columns not read",
        f"{list(unread)} (the {layout.name} format read {read}); set items.format and items.columns to read them",
    )


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


def _read_flat_parquet(path: Path, shown: str, several: bool, start: int = 0, stop: int | None = None) -> list[_Record]:
    """``shown``: how errors name the file; ``several``: the source has other files, so rows name theirs; rows
    [start, stop) only (a sliced split)."""
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
    frame = frame.slice(start, None if stop is None else max(stop - start, 0))
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
        if _is_parquet(segment.file):
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
        records += _read_flat_parquet(path, shown, several, segment.start, segment.stop)
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
            self._parquet[f] = _open_parquet(f, None if locate.reads_in_place(f) else self.local(f))
        return self._parquet[f]

    def count(self, f: SourceFile) -> int:
        if f not in self._counts:
            if _is_parquet(f):
                self._counts[f] = self.parquet(f).metadata.num_rows
            elif f.path.suffix.lower() == ".jsonl":
                self._counts[f] = count_rows(self.local(f))  # lines, not parsed
            else:
                self._counts[f] = sum(1 for _ in self.rows(_Segment(f)))
        return self._counts[f]

    def rows(self, segment: _Segment) -> Iterator[Row]:
        f = segment.file
        if _is_parquet(f):  # only the row groups holding the segment's rows, from the footer already read
            return _parquet_rows(f, self.parquet(f), segment.start, segment.stop)
        local = self.local(f)
        suffix = local.path.suffix.lower()
        rows = _json_rows(local) if suffix == ".json" else _csv_rows(local) if suffix == ".csv" else iter_rows([local])
        return islice(rows, segment.start, segment.stop)


def _is_parquet(f: SourceFile) -> bool:
    return f.path.suffix.lower() == ".parquet"


def _open_parquet(f: SourceFile, local: SourceFile | None) -> Any:
    """``f`` opened with pyarrow: from ``local``, streamed through a small buffer; else read in place, each row
    group's column chunks pre-buffered, one range request per row group."""
    import pyarrow.parquet as pq

    if local is not None:
        files.check_file(local.path, f.name)
    try:
        if local is not None:
            return pq.ParquetFile(local.path, pre_buffer=False, buffer_size=1 << 20)
        return pq.ParquetFile(locate.open_in_place(f), pre_buffer=True)
    except ConfigError:
        raise
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError and others for a file it cannot read
        raise _parquet_error(f, e) from None


def _parquet_error(f: SourceFile, e: Exception) -> ConfigError:
    return locate.read_error(f, e) or ConfigError(f.name, [("", f"cannot read Parquet: {e}")])


def _parquet_rows(f: SourceFile, parquet: Any, start: int, stop: int | None) -> Iterator[Row]:
    """Rows [start, stop) of a Parquet file, named as ``rows`` names them; only the row groups holding them are
    decoded (and, read in place, fetched)."""
    first = 0
    try:
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if stop is not None and first >= stop:
                break
            position, first = first, first + size
            if first <= start:
                continue
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
                lo = max(start - position, 0)
                hi = batch.num_rows if stop is None else min(stop - position, batch.num_rows)
                if lo < hi:
                    for index, data in enumerate(batch.slice(lo, hi - lo).to_pylist(), position + lo):
                        yield Row(f"{f.name} row {index}", data)
                position += batch.num_rows
    except ConfigError:
        raise
    except Exception as e:  # a corrupt page, an unsupported type, or the network, surface only while decoding
        raise _parquet_error(f, e) from None


# ---- .json and .csv data files ----------------------------------------------------------------------------


def _utf8_lines(f: SourceFile) -> Iterator[str]:
    """The file's lines with their endings ("\\n" alone ends a line, as in JSON Lines), a leading byte-order mark
    dropped; a byte that is not UTF-8 is named with its line."""
    files.check_file(f.path, f.name)
    try:
        with f.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    byte = raw[e.start : e.start + 1].hex()
                    reason = f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8"
                    raise ConfigError(f.name, [(f"line {number}", reason)]) from None
                yield line.removeprefix(files.BOM) if number == 1 else line
    except OSError as e:
        raise ConfigError(f.name, [("", f"cannot read {f.name}: {e.strerror or e}")]) from None


def _json_rows(f: SourceFile) -> Iterator[Row]:
    """A .json data file as datasets reads one: a JSON array of objects (the file is read whole), or JSON Lines
    under a .json name (one object per line, streamed), told apart by a first "["."""
    lines = _utf8_lines(f)
    first = True
    for number, line in enumerate(lines, start=1):
        text = line.removesuffix("\n").removesuffix("\r")
        if not text.strip(" \t"):
            continue
        if first and text.lstrip().startswith("["):
            yield from _json_array(f, "\n" * (number - 1) + line + "".join(lines))  # line numbers kept
            return
        first = False
        where = f"line {number}"
        yield Row(f"{f.name} {where}", _json_object(f, where, jsonl.parse_line(text, f.name, where)))


_JSON_SPACE = re.compile(r"[ \t\r\n]*")  # JSON's whitespace (json.decoder's WHITESPACE)


def _json_array(f: SourceFile, text: str) -> Iterator[Row]:
    """The objects of a JSON array, one at a time, named by index (from 0) and the line each starts on; keys
    repeated in an object are refused, as in JSON Lines."""
    decoder, space = json.JSONDecoder(), _JSON_SPACE.match
    index, line, row, last = text.index("[") + 1, 1, 0, 0
    while True:
        index = space(text, index).end()
        if row == 0 and text.startswith("]", index):
            break
        line, last = line + text.count("\n", last, index), index
        where = f"row {row} (line {line})"
        try:
            _, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as e:
            raise ConfigError(f.name, [(where, f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})")]) from None
        except RecursionError:
            raise ConfigError(f.name, [(where, "JSON nested too deeply")]) from None
        except ValueError as e:  # valid JSON Python will not build, e.g. an integer of 5,000 digits
            raise ConfigError(f.name, [(where, f"JSON value cannot be read: {e}")]) from None
        yield Row(f"{f.name} {where}", _json_object(f, where, jsonl.parse_line(text[index:end], f.name, where)))
        index, row = space(text, end).end(), row + 1
        if not text.startswith(",", index):
            break
        index += 1
    closed = text.startswith("]", index)
    if not closed or space(text, index + 1).end() < len(text):
        index = space(text, index + 1).end() if closed else index
        where = f"line {line + text.count(chr(10), last, index)}"
        why = "text after the array's closing ]" if closed else f"expected ',' or ']' after row {row - 1} of the array"
        raise ConfigError(f.name, [(where, f"invalid JSON: {why}")])


def _json_object(f: SourceFile, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        kinds = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
        raise ConfigError(f.name, [(where, f"expected a JSON object, got {kinds.get(type(value), 'a number')}")])
    return value


def _csv_rows(f: SourceFile) -> Iterator[Row]:
    """A CSV file's rows (comma-separated, "-quoted cells may hold commas, quotes and line breaks) as text cells
    under the header's names, each named by the line it starts on. An empty cell is null, as datasets (pandas)
    reads it; unlike pandas, no other text ("NA", "1") becomes null or a number, so texts stay exact."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a long response is one cell: 128 KiB by default
    reader = csv.reader(_utf8_lines(f), strict=True)  # a quote left open is an error, not a cell to the end
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            where, start = f"line {start}", reader.line_num + 1
            if not cells:
                continue  # a blank line
            if header is None:
                header = _csv_header(f, cells)
                continue
            if len(cells) != len(header):
                reason = f"{len(cells)} cell{'s' * (len(cells) != 1)}, but the header names {len(header)} columns"
                raise ConfigError(f.name, [(where, reason)])
            yield Row(f"{f.name} {where}", {k: v if v != "" else None for k, v in zip(header, cells, strict=True)})
    except csv.Error as e:
        raise ConfigError(f.name, [(f"line {reader.line_num}", f"not valid CSV: {e}")]) from None


def _csv_header(f: SourceFile, cells: list[str]) -> list[str]:
    """Column names; an empty one is named as pandas names it ("Unnamed: 0", a saved index); none may repeat."""
    names = [cell if cell != "" else f"Unnamed: {index}" for index, cell in enumerate(cells)]
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ConfigError(f.name, [("header", f"column {repeated!r} appears twice")])
    return names
