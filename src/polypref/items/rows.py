"""Rows of an item source's files, all of them or a seeded sample, without loading a large source whole.

JSONL is read as ``polypref.items.jsonl`` reads it (strict JSON Lines: one object per "\\n"-ended line, duplicate
keys refused, blank lines skipped, errors naming file and line), one line at a time. Parquet is read with pyarrow;
nested types become lists and dicts. Rows come in source order: files in the order given, rows in file order.

``limit`` takes a uniform sample of that many rows over all files, drawn from the seed and the source's row
count alone (same seed, same source: same rows). Rows are counted first (Parquet: the footer; JSONL: one pass
over the lines), the sample is drawn as sorted row numbers, and only those rows are parsed: Parquet reads just
the row groups that hold a chosen row, in batches, so memory stays flat however large the source is. Rows not
chosen are not parsed, so a malformed row outside the sample is not reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from polypref.errors import ConfigError
from polypref.files import BOM, check_file
from polypref.items import jsonl
from polypref.items.locate import SourceFile

BATCH_ROWS = 4096  # Parquet rows decoded at a time
LIMIT_STREAM = 0x6C696D  # keeps the limit's draw apart from other draws on the same seed


@dataclass(frozen=True)
class Row:
    where: str  # how an error names the row: "data/train-00000.parquet row 17" or "items.jsonl line 3"
    data: dict[str, Any]  # the row as Python values (Parquet nested types -> lists/dicts)


def source_columns(files: Sequence[SourceFile]) -> list[str]:
    """Column names over all files, first seen first: Parquet schemas, and the keys of each JSONL file's first
    record. Reads footers and first lines only."""
    columns: dict[str, None] = {}
    for f in files:
        if _is_parquet(f):
            names = _open_parquet(f).schema_arrow.names
        else:
            with closing(_jsonl_rows(f, None)) as rows:  # closes the file after the first record
                first = next(rows, None)
            names = list(first.data) if first else []
        columns.update(dict.fromkeys(names))
    return list(columns)


def read_rows(files: Sequence[SourceFile], limit: int | None = None, seed: int = 0) -> list[Row]:
    """Every row, or a seeded uniform sample of ``limit`` rows (all of them when ``limit`` >= the row count)."""
    return list(iter_rows(files, limit, seed))


def iter_rows(files: Sequence[SourceFile], limit: int | None = None, seed: int = 0) -> Iterator[Row]:
    """read_rows as a stream: one row at a time, so a large source is never held whole."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("config", [("items.limit", f"must be a whole number of at least 1, not {limit!r}")])
    if limit is None:
        for f in files:
            yield from _rows(f, None)
        return
    counts = [count_rows(f) for f in files]
    total = sum(counts)
    if limit >= total:
        for f in files:
            yield from _rows(f, None)
        return
    picks = np.sort(np.random.default_rng([seed, LIMIT_STREAM, total]).choice(total, size=limit, replace=False))
    start = 0
    for f, n in zip(files, counts, strict=True):
        local = picks[np.searchsorted(picks, start) : np.searchsorted(picks, start + n)] - start
        if len(local):
            yield from _rows(f, local)
        start += n


def count_rows(f: SourceFile) -> int:
    """Rows in one file: the Parquet footer's count, or the JSONL record lines (not parsed)."""
    if _is_parquet(f):
        return _open_parquet(f).metadata.num_rows
    return sum(1 for _ in _record_lines(f))


def _rows(f: SourceFile, picks: np.ndarray | None) -> Iterator[Row]:
    """Rows of one file, all or those at the sorted positions ``picks``."""
    return _parquet_rows(f, picks) if _is_parquet(f) else _jsonl_rows(f, picks)


def _is_parquet(f: SourceFile) -> bool:
    suffix = f.path.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f.name, [("", "not a .jsonl or .parquet file")])
    return suffix == ".parquet"


# ---- Parquet ------------------------------------------------------------------------------------------------


def _open_parquet(f: SourceFile) -> Any:
    import pyarrow.parquet as pq

    check_file(f.path, f.name)
    try:
        # no pre-buffering: column chunks stream through a small buffer instead of being read whole
        return pq.ParquetFile(f.path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError and others for a file it cannot read
        raise ConfigError(f.name, [("", f"cannot read Parquet: {e}")]) from None


def _parquet_rows(f: SourceFile, picks: np.ndarray | None) -> Iterator[Row]:
    parquet = _open_parquet(f)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    groups = range(len(sizes)) if picks is None else np.unique(np.searchsorted(starts, picks, side="right") - 1)
    try:
        for group in groups:
            position = int(starts[group])
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[int(group)]):
                end = position + batch.num_rows
                if picks is None:
                    chosen = np.arange(position, end)
                else:
                    chosen = picks[np.searchsorted(picks, position) : np.searchsorted(picks, end)]
                    batch = batch.take(chosen - position)
                for index, data in zip(chosen, batch.to_pylist(), strict=True):
                    yield Row(f"{f.name} row {index}", data)
                position = end
    except ConfigError:
        raise
    except Exception as e:  # a corrupt page or an unsupported type surfaces only while decoding
        raise ConfigError(f.name, [("", f"cannot read Parquet: {e}")]) from None


# ---- JSONL --------------------------------------------------------------------------------------------------


def _record_lines(f: SourceFile) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line without "\\n") for each line holding a record (not only spaces and tabs)."""
    check_file(f.path, f.name)
    try:
        with f.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.removesuffix(b"\n").removesuffix(b"\r")
                if number == 1:
                    line = line.removeprefix(BOM.encode())
                if line.strip(b" \t\r"):
                    yield number, line
    except OSError as e:
        raise ConfigError(f.name, [("", f"cannot read {f.path}: {e.strerror or e}")]) from None


def _jsonl_rows(f: SourceFile, picks: np.ndarray | None) -> Iterator[Row]:
    wanted = iter(picks.tolist()) if picks is not None else None
    target = next(wanted, None) if wanted is not None else None
    for index, (number, line) in enumerate(_record_lines(f)):
        if wanted is not None:
            if index != target:
                continue
            target = next(wanted, None)
        where = f"line {number}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            byte = line[e.start : e.start + 1].hex()
            raise ConfigError(f.name, [(where, f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8")]) from None
        data = jsonl.parse_line(text, f.name, where)
        if not isinstance(data, dict):
            raise ConfigError(f.name, [(where, f"expected a JSON object, got {_json_type(data)}")])
        yield Row(f"{f.name} {where}", data)
        if wanted is not None and target is None:
            return


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")
