"""Rows of one item file, whatever its format, as Python values, without loading a large file whole.

One reader per format, each a stream in file order: Parquet (pyarrow; nested types become lists and dicts; only
the row groups holding the rows asked for are decoded), JSONL (``polypref.items.jsonl``'s strict JSON Lines: one
object per "\\n"-ended line, duplicate keys refused, blank lines skipped), ``.json`` (a JSON array of objects, or
JSON Lines under a .json name) and ``.csv`` (text cells under a header). Errors are ConfigErrors naming the file
and its line or row; a row is named the same way in ``Row.where``. A line that cannot be read as an object while
the file around it can (invalid JSON or not UTF-8 on one JSONL line, a JSON value that is not an object, a CSV
line with the wrong number of cells) is yielded in its place as ``Unreadable``, so rows keep their positions (a
limit counts it) and the caller refuses it or skips it (``items.on_error``). Which files and rows to read is
``sources``'.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from polypref import files
from polypref.errors import ConfigError
from polypref.items import jsonl, locate
from polypref.items.locate import SourceFile

BATCH_ROWS = 4096  # Parquet rows decoded at a time
_BOM = files.BOM.encode()
_JSON_SPACE = re.compile(r"[ \t\r\n]*")  # JSON's whitespace (json.decoder's WHITESPACE)
_JSON_TYPES = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row that could not be read, held in its place: why (the error naming file, line and reason)."""

    error: ConfigError


@dataclass(slots=True)
class Row:
    """One row (not frozen: one is made per row, and a frozen dataclass takes 4 times as long to make)."""

    where: str  # how an error names the row: "data/train-00000.parquet row 17" or "items.jsonl line 3"
    data: dict[str, Any] | Unreadable  # the row as Python values (Parquet nested types -> lists/dicts)


def is_parquet(f: SourceFile) -> bool:
    return f.path.suffix.lower() == ".parquet"


def read_rows(f: SourceFile, start: int = 0, stop: int | None = None, parquet: Any = None) -> Iterator[Row]:
    """Rows [start, stop) of one file (stop None: to its end). A Parquet file is read from ``parquet``, the file
    as ``open_parquet`` opened it (so a footer is read once, and a Hub file may be read in place), else opened
    here; any other file is a local one, read from its start (rows before ``start`` are parsed, not kept)."""
    if is_parquet(f):
        return parquet_rows(f, parquet if parquet is not None else open_parquet(f, f), start, stop)
    suffix = f.path.suffix.lower()
    readers = {".jsonl": _jsonl_rows, ".json": _json_rows, ".csv": _csv_rows}
    if suffix not in readers:
        raise ConfigError(f.name, [("", "not a .jsonl, .parquet, .json or .csv file")])
    return islice(readers[suffix](f), start, stop)


def count_rows(f: SourceFile, parquet: Any = None) -> int:
    """Rows in one file: a Parquet footer's count (of ``parquet`` as in ``read_rows``), JSONL's record lines (not
    parsed), or a .json or .csv file's rows (read through: only parsing tells where they end)."""
    if is_parquet(f):
        return (parquet if parquet is not None else open_parquet(f, f)).metadata.num_rows
    if f.path.suffix.lower() == ".jsonl":
        return sum(1 for _ in _record_lines(f))
    return sum(1 for _ in read_rows(f))


def source_columns(sources: Sequence[SourceFile]) -> list[str]:
    """Column names over local files, first seen first: Parquet schemas, and the keys of each other file's first
    row. Reads footers and first rows only."""
    columns: dict[str, None] = {}
    for f in sources:
        if is_parquet(f):
            names = open_parquet(f, f).schema_arrow.names
        else:
            first = next(read_rows(f, 0, 1), None)  # the file is closed as the reader is dropped
            names = list(first.data) if first and isinstance(first.data, dict) else []
        columns.update(dict.fromkeys(names))
    return list(columns)


# ---- Parquet ------------------------------------------------------------------------------------------------


def open_parquet(f: SourceFile, local: SourceFile | None) -> Any:
    """``f`` opened with pyarrow (its footer read): from ``local``, streamed through a small buffer; else read in
    place, each row group's column chunks pre-buffered, one range request per row group."""
    import pyarrow.parquet as pq

    if local is not None:
        files.check_file(local.path, f.name)
    try:
        if local is not None:
            # no pre-buffering: column chunks stream through a small buffer instead of being read whole
            return pq.ParquetFile(local.path, pre_buffer=False, buffer_size=1 << 20)
        return pq.ParquetFile(locate.open_in_place(f), pre_buffer=True)
    except ConfigError:
        raise
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError and others for a file it cannot read
        raise _parquet_error(f, e) from None


def parquet_rows(f: SourceFile, parquet: Any, start: int = 0, stop: int | None = None) -> Iterator[Row]:
    """Rows [start, stop) of a Parquet file opened by ``open_parquet``; only the row groups holding them are
    decoded (and, read in place, fetched)."""
    first, named = 0, f"{f.name} row "
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
                        yield Row(f"{named}{index}", data)
                position += batch.num_rows
    except ConfigError:
        raise
    except Exception as e:  # a corrupt page, an unsupported type, or the network, surface only while decoding
        raise _parquet_error(f, e) from None


def _parquet_error(f: SourceFile, e: Exception) -> ConfigError:
    return locate.read_error(f, e) or ConfigError(f.name, [("", f"cannot read Parquet: {e}")])


# ---- lines of text files ------------------------------------------------------------------------------------


def _raw_lines(f: SourceFile) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, the line's bytes with its ending) of a local file; "\\n" alone ends a line (as in
    JSON Lines: other Unicode line breaks are text), and a leading byte-order mark is dropped."""
    files.check_file(f.path, f.name)
    try:
        with f.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw.removeprefix(_BOM) if number == 1 else raw
    except OSError as e:
        raise ConfigError(f.name, [("", f"cannot read {f.path}: {e.strerror or e}")]) from None


def _utf8(f: SourceFile, number: int, raw: bytes) -> str:
    """Line ``number`` as text; a byte that is not UTF-8 is named with its line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        reason = f"not UTF-8 text (byte 0x{raw[e.start : e.start + 1].hex()}); save the file as UTF-8"
        raise ConfigError(f.name, [(f"line {number}", reason)]) from None


def _json_row(f: SourceFile, where: str, text: str) -> Row:
    """One JSON object of a .jsonl or .json file; anything else is refused, naming its JSON type."""
    value = jsonl.parse_line(text, f.name, where)
    if not isinstance(value, dict):
        kind = _JSON_TYPES.get(type(value), "a number")
        raise ConfigError(f.name, [(where, f"expected a JSON object, got {kind}")])
    return Row(f"{f.name} {where}", value)


# ---- JSONL --------------------------------------------------------------------------------------------------


def _record_lines(f: SourceFile) -> Iterator[tuple[int, bytes]]:
    """(line number, line without "\\n" or "\\r\\n") of each line holding a record (not only spaces and tabs)."""
    for number, raw in _raw_lines(f):
        line = raw.removesuffix(b"\n").removesuffix(b"\r")
        if line.strip(b" \t\r"):
            yield number, line


def _jsonl_rows(f: SourceFile) -> Iterator[Row]:
    for number, line in _record_lines(f):
        try:
            row = _json_row(f, f"line {number}", _utf8(f, number, line))
        except ConfigError as e:  # this line alone: the lines after it still read
            row = Row(f"{f.name} line {number}", Unreadable(e))
        yield row


# ---- .json --------------------------------------------------------------------------------------------------


def _json_rows(f: SourceFile) -> Iterator[Row]:
    """A .json data file as datasets reads one: a JSON array of objects (the file is read whole), or JSON Lines
    under a .json name (one object per line, streamed), told apart by a first "["."""
    raw_lines = _raw_lines(f)
    first = True
    for number, raw in raw_lines:
        stripped = raw.removesuffix(b"\n").removesuffix(b"\r")
        if not stripped.strip(b" \t"):
            continue
        if first and stripped.lstrip().startswith(b"["):
            rest = "".join(_utf8(f, n, r) for n, r in raw_lines)  # an array is one value: a bad byte breaks it
            yield from _json_array(f, "\n" * (number - 1) + _utf8(f, number, raw) + rest)  # line numbers kept
            return
        first = False
        try:  # JSON Lines under a .json name: a line that cannot be read is that row alone
            row = _json_row(f, f"line {number}", _utf8(f, number, stripped))
        except ConfigError as e:
            row = Row(f"{f.name} line {number}", Unreadable(e))
        yield row


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
        try:
            read = _json_row(f, where, text[index:end])
        except ConfigError as e:  # valid JSON that is not an object: the array's other rows still read
            read = Row(f"{f.name} {where}", Unreadable(e))
        yield read
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


# ---- .csv ---------------------------------------------------------------------------------------------------


def _csv_rows(f: SourceFile) -> Iterator[Row]:
    """A CSV file's rows (comma-separated, "-quoted cells may hold commas, quotes and line breaks) as text cells
    under the header's names, each named by the line it starts on. An empty cell is null, as datasets (pandas)
    reads it; unlike pandas, no other text ("NA", "1") becomes null or a number, so texts stay exact."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a long response is one cell: 128 KiB by default
    broken: dict[int, ConfigError] = {}  # line number -> why it is not UTF-8, until its row is read

    def lines() -> Iterator[str]:
        for number, raw in _raw_lines(f):
            try:
                yield _utf8(f, number, raw)
            except ConfigError as e:  # the row holding it is unreadable, not the file
                broken[number] = e
                yield raw.decode("utf-8", "surrogateescape")

    reader = csv.reader(lines(), strict=True)  # a quote left open is an error, not a cell to the end
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            first, start = start, reader.line_num + 1
            where = f"line {first}"
            bad = [broken.pop(n) for n in range(first, start) if n in broken]
            if bad and header is None:
                raise bad[0]
            if bad:
                yield Row(f"{f.name} {where}", Unreadable(bad[0]))
                continue
            if not cells:
                continue  # a blank line
            if header is None:
                header = _csv_header(f, cells)
                continue
            if len(cells) != len(header):
                reason = f"{len(cells)} cell{'s' * (len(cells) != 1)}, but the header names {len(header)} columns"
                yield Row(f"{f.name} {where}", Unreadable(ConfigError(f.name, [(where, reason)])))
                continue
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
