"""Reading the user's own files (specs, survey tables, items): every way a path can be wrong becomes a ConfigError.

A folder where a file belongs, a file that is not UTF-8, or one the OS will not open would otherwise surface as a
Python traceback from deep inside a reader; here they name the file and say what to fix.

Writing: every file is written atomically (temp file + rename; Parquet with the `datasets` defaults). A write that
fails (full disk, read-only folder) removes its temp file and raises OutputError naming the path, so a build stops
with a clear message and never leaves a torn file under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from polypref.errors import ConfigError, OutputError

BOM = "\ufeff"


def read_bytes(path: Path, source: str | None = None, field: str = "", missing: str = "file not found") -> bytes:
    """The file's bytes. ``source``/``field`` say where to report a bad path (default: the file itself)."""
    where = source if source is not None else str(path)
    if path.is_dir():
        raise ConfigError(where, [(field, f"{path} is a folder, not a file")])
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(where, [(field, f"{missing}: {path}")]) from None
    except OSError as e:
        raise ConfigError(where, [(field, f"cannot read {path}: {e.strerror or e}")]) from None


def check_file(path: Path, source: str | None = None, field: str = "", missing: str = "file not found") -> None:
    """Refuse a path that is missing or a folder, for readers (Parquet) that open the file themselves."""
    where = source if source is not None else str(path)
    if path.is_dir():
        raise ConfigError(where, [(field, f"{path} is a folder, not a file")])
    if not path.is_file():
        raise ConfigError(where, [(field, f"{missing}: {path}")])


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text with a leading byte-order mark dropped (it is encoding metadata, not content).

    Anything else is kept exactly: no newline translation, no normalisation.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        byte = data[e.start : e.start + 1].hex()
        raise ConfigError(
            str(path), [(f"line {line}", f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8")]
        ) from None
    return text.removeprefix(BOM)


def read_text(path: Path, source: str | None = None, field: str = "", missing: str = "file not found") -> str:
    return decode(path, read_bytes(path, source, field, missing))


class _StrictLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys; a user's file must not silently lose a label or a setting that way."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: list[Any] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        # 1, 1.0 and true are equal Python keys: YAML would keep only the last of them
        if any(key == other for other in seen):
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.append(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str, field: str = "") -> Any:
    """YAML text as Python values, refusing duplicate keys; every way it can fail is a ConfigError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [(field, f"YAML syntax error: {where}{getattr(e, 'problem', e)}")]) from None
    except RecursionError:
        raise ConfigError(source, [(field, "YAML nested too deeply")]) from None
    except (ValueError, OverflowError) as e:  # a scalar Python cannot build: 2020-13-45, an int of 5,000 digits
        reason = str(e).split(";")[0]  # not Python's advice on sys.set_int_max_str_digits
        raise ConfigError(source, [(field, f"YAML value cannot be read: {reason}")]) from None


def read_yaml(path: Path) -> Any:
    return parse_yaml(read_text(path), str(path))


def is_blank(text: str) -> bool:
    """True for text a reader sees nothing of: empty, whitespace, or invisible format characters (a zero-width
    space, a byte-order mark) alone."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text)


# -- writing ----------------------------------------------------------------------------------------------------
TMP_PREFIX = ".tmp-"  # what a killed writer can leave behind; never data (see build.state)
# datasets 5.x defaults: content-defined chunking lets the Hub (Xet) dedupe re-uploads of similar shards
CDC = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


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
