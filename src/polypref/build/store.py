"""The judgment store: every answer a judge gave, kept under a key of what decided it, so none is paid twice.

A unit's key hashes the judge's identity (``fingerprint.judge_key``: backend, settings, seed, templates, judging
code), the persona's and the pair's full content, the order shown and the sample number: 128 bits as two
``uint64`` columns ``k0, k1``. Whatever else a config changes (filters, population size, items, shard size),
a unit with the same key gets the stored answer instead of a request; a changed judge or template changes
every key, so a stale answer is never reused. A request that got no answer, or failed for what it was or where it
ran (out of credits, too long, an engine out of memory), is not stored: a later build asks again.

On disk: ``<store>/<judge key>/<uuid>.parquet``, one append-only segment per saved micro-batch (written by
temp file + rename, so concurrent writers never collide and a killed one leaves no half segment).
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from polypref.errors import OutputError
from polypref.files import TMP_PREFIX, write_parquet
from polypref.judges.base import NOT_STORED, VERDICT_COLUMNS
from polypref.records import UnitBatch, mix64

KEY_COLUMNS = ("k0", "k1")
STORED_COLUMNS: dict[str, pl.DataType] = {"k0": pl.UInt64(), "k1": pl.UInt64()} | {
    k: v for k, v in VERDICT_COLUMNS.items() if k != "unit"
}


def digest_words(digests: list[str]) -> np.ndarray:
    """32-hex-digit content digests as an (n, 2) array of uint64."""
    return np.array([(int(d[:16], 16), int(d[16:32], 16)) for d in digests], dtype=np.uint64).reshape(-1, 2)


def unit_keys(judge_key: str, persona_words: np.ndarray, pair_words: np.ndarray, batch: UnitBatch) -> np.ndarray:
    """Per unit of ``batch``, its 128-bit store key as (n, 2) uint64.

    ``persona_words`` and ``pair_words`` hold the content digests of ``batch.personas`` and ``batch.pairs`` (in
    their order). Vectorised: a shard holds hundreds of thousands of units.
    """
    judge = int(judge_key[:16], 16)
    keys = np.empty((len(batch), 2), dtype=np.uint64)
    order_sample = (batch.order.astype(np.uint64) << np.uint64(32)) ^ batch.sample.astype(np.uint64)
    for word in (0, 1):
        salt = mix64(np.array([judge ^ (word * 0x5851F42D4C957F2D)], dtype=np.uint64))[0]
        x = mix64(persona_words[batch.persona_idx, word] ^ salt)
        x = mix64(x ^ pair_words[batch.pair_idx, word])
        keys[:, word] = mix64(x ^ order_sample)
    return keys


def _read_keys(path: Path, number: int) -> pl.DataFrame:
    """A segment's keys, as index rows of segment ``number``. A segment that is not ours, or is damaged, stops the
    build: merging it could put answers into the dataset that no judge gave."""
    try:
        schema = pq.read_schema(path)
        missing = [c for c in STORED_COLUMNS if c not in schema.names]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
        keys = pq.read_table(path, columns=list(KEY_COLUMNS))
    except (OSError, ValueError, pa.ArrowException) as e:
        raise OutputError(
            f"{path}: not a judgment store segment ({str(e)[:200]}); delete it, and a build asks again "
            "for the judgments it held"
        ) from None
    keys_frame = pl.from_arrow(keys).cast({c: pl.UInt64 for c in KEY_COLUMNS})  # type: ignore[union-attr]
    return keys_frame.with_columns(file=pl.lit(number, dtype=pl.UInt32))


class JudgmentStore:
    """The stored judgments of one judge identity. Thread-safe: the shards of a build share one."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._files: list[Path] | None = None
        # the keys of each segment by its number in _files, one frame per read or save: concatenating on each save
        # copied the whole index per micro-batch (quadratic; 10^7 keys = 200 MB copied again and again)
        self._index: dict[int, pl.DataFrame] = {}
        self._saved: dict[Path, int] = {}  # segments this process saved, by number (what forget() may drop)
        self._forgotten: dict[int, list[tuple[Path, int]]] = {}  # per shard, the segments forget() dropped

    def segments(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.parquet") if not p.name.startswith(TMP_PREFIX))

    def _load(self) -> None:
        """Read the keys of every segment not read yet (called under the lock)."""
        known = self._files or []
        seen = set(known)
        new = [p for p in self.segments() if p not in seen]
        for i, path in enumerate(new, start=len(known)):
            self._index[i] = _read_keys(path, i)
        self._files = [*known, *new]

    def refresh(self) -> None:
        """Also index the segments other processes saved since (workers of one build share the store)."""
        with self._lock:
            self._load()

    def check(self) -> None:
        """Read every segment's keys now: raises OutputError for a segment that is not ours or is damaged."""
        self._snapshot()

    def _snapshot(self) -> tuple[list[Path], pl.DataFrame]:
        with self._lock:
            if self._files is None:
                self._load()
            assert self._files is not None
            index = [pl.DataFrame(schema={"k0": pl.UInt64, "k1": pl.UInt64, "file": pl.UInt32}), *self._index.values()]
            return list(self._files), pl.concat(index, rechunk=False)

    def lookup(self, keys: np.ndarray) -> pl.DataFrame:
        """The stored answers for the given keys: VERDICT_COLUMNS, ``unit`` = the key's row in ``keys``.

        A key stored twice (two workers judged the same unit) gives the answer of the first segment by name.
        """
        files, index = self._snapshot()
        query = pl.DataFrame({"k0": keys[:, 0], "k1": keys[:, 1], "unit": np.arange(len(keys), dtype=np.int64)})
        hits = query.join(index, on=list(KEY_COLUMNS), how="inner").sort("file").unique("unit", keep="first")
        found = []
        for (file,), wanted in hits.group_by("file"):
            path = files[int(file)]  # type: ignore[call-overload]
            try:
                stored = pl.read_parquet(path).cast(STORED_COLUMNS)  # type: ignore[arg-type]
            except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as e:
                raise OutputError(
                    f"{path}: damaged judgment store segment ({str(e)[:200]}); delete it, and a build asks again "
                    "for the judgments it held"
                ) from None
            rows = wanted.select("unit", *KEY_COLUMNS).join(stored, on=list(KEY_COLUMNS), how="inner")
            found.append(rows.unique("unit", keep="first"))
        columns = list(VERDICT_COLUMNS)
        if not found:
            return pl.DataFrame(schema=VERDICT_COLUMNS)
        return pl.concat(found).select(columns).cast(VERDICT_COLUMNS).sort("unit")  # type: ignore[arg-type]

    def save(self, keys: np.ndarray, verdicts: pl.DataFrame, row_group_rows: int) -> Path | None:
        """Store a micro-batch of answers (``unit`` = row in ``keys``); units without an answer, or whose request
        failed for what it was or where it ran, are left out (judges.base.NOT_STORED). Returns the segment
        written (None: nothing to store)."""
        answered = verdicts.filter(~NOT_STORED)
        if not answered.height:
            return None
        units = answered["unit"].to_numpy()
        table = answered.drop("unit").with_columns(
            k0=pl.Series(keys[units, 0], dtype=pl.UInt64), k1=pl.Series(keys[units, 1], dtype=pl.UInt64)
        )
        path = self.root / f"{uuid.uuid4().hex}.parquet"
        write_parquet(table.select(list(STORED_COLUMNS)).to_arrow(), path, row_group_rows)
        with self._lock:
            if self._files is not None:
                added = table.select(*KEY_COLUMNS).with_columns(file=pl.lit(len(self._files), dtype=pl.UInt32))
                self._index[len(self._files)] = added
                self._saved[path] = len(self._files)
                self._files.append(path)
        return path

    def forget(self, shard: int, saved: list[Path]) -> None:
        """Drop the keys of segments this process saved for ``shard`` from the index (not from disk), once its
        report marks it finished: the index stays flat over a build of 10^7 judgments instead of holding every
        key it saved. Should the shard be judged again in this process after all (its files went missing),
        ``recall`` indexes them again."""
        with self._lock:
            for path in saved:
                if (number := self._saved.pop(path, None)) is not None:
                    self._index.pop(number, None)
                    self._forgotten.setdefault(shard, []).append((path, number))

    def recall(self, shard: int) -> None:
        """Index again, from disk, the keys that ``forget`` dropped for ``shard``: it is about to be judged again."""
        with self._lock:
            for path, number in self._forgotten.pop(shard, []):
                self._index[number] = _read_keys(path, number)

    def count(self) -> int:
        """Judgments stored (from the segments' footers; safe while a build writes)."""
        total = 0
        for path in self.segments():
            try:
                total += pq.read_metadata(path).num_rows
            except (OSError, pa.ArrowException):
                continue
        return total
