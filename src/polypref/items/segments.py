"""What to read of an item source, and the records read: each split term's slice of its files, then the first
``limit`` rows (see _segments), a Hub file fetched only when its rows are read, and polypref's flat Parquet layout
grouped into items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from polypref.errors import ConfigError
from polypref.items import flat, locate, rows
from polypref.items.config import ItemsConfig
from polypref.items.layout import Layout
from polypref.items.locate import ItemSource, SourceFile
from polypref.items.rows import Row

_FLAT_NAMES = {"id": "response_id", "text": "response", "stance": "stance"}  # response key -> flat column


@dataclass(slots=True)
class Record:
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


def source_name(located: ItemSource) -> str:
    """How errors name the source: its one file, or the source as given."""
    return file_name(located, located.files[0]) if len(located.files) == 1 else located.provenance.get("source") or ""


def file_name(located: ItemSource, file: SourceFile) -> str:
    """How errors name one file of a source: as the user gave it, or inside a Hub repo with the repo."""
    return f"{located.provenance.get('source')}/{file.name}" if located.kind == "hub" else file.name


# ---- what to read: split slices, the limit, Hub files fetched as read ---------------------------------------


@dataclass(frozen=True)
class Segment:
    """Rows [start, stop) of one file; stop None: to its end."""

    file: SourceFile
    start: int = 0
    stop: int | None = None


def read_plan(located: ItemSource, opened: Files, config: ItemsConfig, name: str) -> list[Segment]:
    plan = list(_segments(located, opened, config.limit))
    if not plan:
        sliced = any(part.term.sliced for part in located.parts)
        if sliced:
            raise ConfigError("config", [("items.split", f"{config.split!r} selects no rows of {name}")])
        raise ConfigError(name, [("", "no items")])
    return plan


def _segments(located: ItemSource, opened: Files, limit: int | None) -> Iterator[Segment]:
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
                yield Segment(f)  # the rest of the split, whole: nothing to count
                continue
            n = opened.count(f)
            lo, hi = max(start - offset, 0), n if stop is None else min(stop - offset, n)
            if left is not None:
                hi = min(hi, lo + left)
            if lo < hi:
                yield Segment(f, lo, None if lo == 0 and hi == n else hi)
                left = None if left is None else left - (hi - lo)
            offset += n


def schema_columns(opened: Files, plan: list[Segment]) -> list[str]:
    """The schema columns of the Parquet files to read, first seen first (other files' keys come from their rows)."""
    names: dict[str, None] = {}
    for segment in plan:
        if rows.is_parquet(segment.file):
            names.update(dict.fromkeys(opened.parquet(segment.file).schema_arrow.names))
    return list(names)


class Files:
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

    def segment_rows(self, segment: Segment) -> Iterator[Row]:
        f = segment.file
        if rows.is_parquet(f):  # only the row groups holding the segment's rows, from the footer already read
            return rows.read_rows(f, segment.start, segment.stop, self.parquet(f))
        return rows.read_rows(self.local(f), segment.start, segment.stop)


# ---- the records read ---------------------------------------------------------------------------------------


def reader(
    located: ItemSource, layout: Layout | None, limit: int | None, opened: Files, plan: list[Segment]
) -> Callable[[], Iterator[Record]]:
    """The source's records, read anew on each call (a stream), or grouped first for the flat Parquet layout."""
    if layout is not None and layout.flat:
        grouped = _flat_records(located, opened, limit)
        return lambda: iter(grouped)
    single = len(located.files) == 1
    shown = f"{located.files[0].name} "  # a single file's rows are named without it

    def read() -> Iterator[Record]:
        # a stream, each row converted and dropped: a source of 10^6 items is never held as raw rows
        for segment in plan:
            for row in opened.segment_rows(segment):
                yield Record(row.where.removeprefix(shown) if single else row.where, row.data)

    return read


def _flat_records(located: ItemSource, opened: Files, limit: int | None) -> list[Record]:
    """polypref's flat Parquet layout grouped into items file by file (whole files: an item's rows may span row
    groups); with a limit, the first ``limit`` items, reading files only until they are found."""
    several = len(located.files) > 1
    records: list[Record] = []
    for segment in _segments(located, opened, None):
        shown = file_name(located, segment.file)
        path = opened.local(segment.file).path
        found = flat.read_flat_parquet(path, shown, several, segment.start, segment.stop)
        records += [Record(*item) for item in found]
        if limit is not None and len(records) >= limit:
            break
    return records[:limit]
