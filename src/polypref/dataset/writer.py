"""Files in Hub layout, written atomically (temp file + rename) with the `datasets` Parquet defaults.

A write that fails (full disk, read-only folder) removes its temp file and raises OutputError naming the
path, so a build stops with a clear message and never leaves a torn file under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from polypref.errors import OutputError

CONFIGS = ("preferences", "judgments", "personas", "pairs", "weights", "review", "map", "distributions", "episodes")
# made anew over the whole dataset at the end of every build (the rest are written shard by shard)
FINAL_CONFIGS = ("pairs", "weights", "review", "map", "distributions", "episodes")
TMP_PREFIX = ".tmp-"  # what a killed writer can leave behind; never data (see dataset.state)
# datasets 5.x defaults: content-defined chunking lets the Hub (Xet) dedupe re-uploads of similar shards
CDC = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


def shard_path(out: Path, config: str, index: int, split: str = "train") -> Path:
    """Without the total in the name (train-00003-of-00012): a refresh adds shards and renames none. A config
    split by persona (dataset.splits) has a file per split beside it: test-00003.parquet."""
    return out / "data" / config / f"{split}-{index:05d}.parquet"


@dataclass(frozen=True)
class WrittenFile:
    """What a published file held when it was written: a build checks it before trusting or pushing the file
    (a flipped byte inside a shard can read without error and garble its texts)."""

    sha256: str
    rows: int


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _temp_for(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")


@contextmanager
def reported(path: Path) -> Iterator[None]:
    """OS errors while writing ``path`` become an OutputError that says what to do."""
    try:
        yield
    except OSError as e:
        hint = {
            errno.ENOSPC: "the disk is full; free space and rerun the same command to resume",
            errno.EDQUOT: "the disk quota is exceeded; free space and rerun the same command to resume",
            errno.EROFS: "the file system is read-only; choose another --out",
            errno.EACCES: "permission denied; choose another --out",
            errno.EEXIST: "a folder on its path is a file",
            errno.ENOTDIR: "a folder on its path is a file",
        }.get(e.errno or 0, f"{e.strerror or e}")
        raise OutputError(f"cannot write {path}: {hint}") from None
    except pa.ArrowException as e:  # pyarrow reports some I/O failures as its own errors
        raise OutputError(f"cannot write {path}: {e}") from None


def _discard(tmp: Path) -> None:
    """Remove a temp file if there is one; a path that cannot hold one has nothing to remove."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_content_defined_chunking": CDC,
    "write_page_index": True,
}


def _write_parquet_file(table: pa.Table, path: Path, row_group_rows: int) -> None:
    with pq.ParquetWriter(path, table.schema, **PARQUET_OPTIONS) as writer:
        if table.num_rows:  # an empty row group breaks `datasets` (batch size 0); no row group reads fine
            writer.write_table(table, row_group_size=row_group_rows)


def write_parquet_together(tables: Sequence[tuple[pa.Table, Path]], row_group_rows: int) -> list[WrittenFile]:
    """Write several files so that they all appear or none does: every temp file is complete before the
    first rename, and renames cannot fail for lack of space. Returns what each file holds, in order."""
    temps: list[tuple[Path, Path]] = []
    written = []
    try:
        for table, path in tables:
            with reported(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = _temp_for(path)
                temps.append((tmp, path))
                _write_parquet_file(table, tmp, row_group_rows)
                written.append(WrittenFile(file_sha256(tmp), table.num_rows))
        for tmp, path in temps:
            with reported(path):
                os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            _discard(tmp)
    return written


def write_parquet(table: pa.Table, path: Path, row_group_rows: int) -> WrittenFile:
    """Write then rename: a crash leaves either no file or a complete one, never a torn shard."""
    return write_parquet_together([(table, path)], row_group_rows)[0]


def write_parquet_parts(parts: Iterable[pa.Table], path: Path, row_group_rows: int) -> WrittenFile:
    """Write a table given as consecutive parts (at least one; all with the first one's schema) as write_parquet
    writes the whole: the same row groups and bytes, holding about one part at a time."""
    return write_parquet_parts_together(({path.name: part} for part in parts), {path.name: path}, row_group_rows)[path]


def write_parquet_parts_together(
    parts: Iterable[Mapping[str, pa.Table]], paths: Mapping[str, Path], row_group_rows: int
) -> dict[Path, WrittenFile]:
    """Several files, each given as consecutive parts: every part maps a key of ``paths`` to the next rows of
    that file (the first part must name every key: its schema starts the file). Each file is cut into row groups
    as write_parquet cuts it whole, about one part is held at a time, and all appear together (renamed only
    once every one is complete)."""
    temps = {key: _temp_for(path) for key, path in paths.items()}
    writers: dict[str, pq.ParquetWriter] = {}
    pending: dict[str, list[pa.Table]] = {key: [] for key in paths}
    rows = dict.fromkeys(paths, 0)
    written: dict[Path, WrittenFile] = {}
    try:
        # an OS error while the parts are made (the caller's spill, say) is reported against the files too
        with reported(next(iter(paths.values()))):
            for part in parts:
                for key, table in part.items():
                    path = paths[key]
                    with reported(path):
                        if key not in writers:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            writers[key] = pq.ParquetWriter(temps[key], table.schema, **PARQUET_OPTIONS)
                        pending[key].append(table)
                        rows[key] += table.num_rows
                        # full row groups, cut as one write cuts them
                        while sum(t.num_rows for t in pending[key]) >= row_group_rows:
                            whole = pa.concat_tables(pending[key])
                            chunk = whole.slice(0, row_group_rows).combine_chunks()
                            writers[key].write_table(chunk, row_group_size=row_group_rows)
                            pending[key] = [whole.slice(row_group_rows)]
        if missing := [key for key in paths if key not in writers]:
            raise ValueError(f"no part gave {paths[missing[0]]} its first rows (its schema)")
        for key, path in paths.items():
            with reported(path):
                if (remainder := pa.concat_tables(pending[key])).num_rows:
                    writers[key].write_table(remainder.combine_chunks(), row_group_size=row_group_rows)
                writers[key].close()
                written[path] = WrittenFile(file_sha256(temps[key]), rows[key])
        for key, path in paths.items():
            with reported(path):
                os.replace(temps[key], path)
    finally:
        for writer in writers.values():
            if writer.is_open:
                writer.close()
        for tmp in temps.values():
            _discard(tmp)
    return written


def write_bytes(data: bytes, path: Path) -> None:
    tmp = _temp_for(path)
    try:
        with reported(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
    finally:
        _discard(tmp)


def write_json(data: Any, path: Path) -> None:
    """Atomic JSON write, used for run state and shard completion markers."""
    write_bytes(json.dumps(data, indent=2, sort_keys=True, default=str).encode("utf-8"), path)
