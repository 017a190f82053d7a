"""The fidelity check's answers, saved in the build folder micro-batch by micro-batch as they arrive, so that a
build stopped during the check (Ctrl-C, a crash, an endpoint that left questions unanswered) asks again only
the questions that have no saved answer. A build once lost 3,072 answered questions to a Ctrl-C, and its rerun
asked all 17,214 again: the figures (``fidelity.json``) were written only once every question was answered.

Each answer is kept under a key of what decided it: the settings (the build's judge key, which covers backend,
model, sampling, seed, templates and judging code, plus the invalid-output retry budget and the code that reads
an option off an answer) name a folder, and each question's key hashes its request: the messages (the persona's
portrayal with its own answer held out, or none for the persona-free baseline, then the question and its
options) and the options. So a refresh that adds personas asks only the new personas' questions, and a new
wording asks anew.

On disk: ``<build>/.polypref/fidelity/<settings>/<uuid>.parquet`` (columns ``k0, k1``: the 128-bit key;
``answer``: the option named, or null for a question answered every time without naming one), written by temp
file + rename, so a killed process leaves no half segment. Questions whose request got no answer at all are not
saved: they are asked again.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from polypref.dataset.store import digest_words
from polypref.dataset.writer import TMP_PREFIX, write_parquet
from polypref.errors import OutputError
from polypref.records import content_hash

COLUMNS: dict[str, pl.DataType] = {"k0": pl.UInt64(), "k1": pl.UInt64(), "answer": pl.String()}
Messages = list[dict[str, str]]


def settings_key(judge_key: str, max_invalid_retries: int | None, reading_code: str) -> str:
    """The folder of the answers one judge gives under one retry budget and one way of reading them
    (``reading_code``: the digest of the code that turns a reply into an option)."""
    return content_hash(judge_key, max_invalid_retries, reading_code, size=16)


class AnswerStore:
    """The saved answers of one judge's settings. ``reuse=False`` (``--overwrite``): those saved before are
    discarded, and the new ones saved, so the answers an overwrite paid for serve the next run."""

    def __init__(self, root: Path, settings: str, reuse: bool = True):
        self.root = root
        self.folder = root / settings
        self.reuse = reuse
        if not reuse:
            shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def keys(questions: Sequence[Messages], options: Sequence[Sequence[str]]) -> np.ndarray:
        """Each question's 128-bit key as (n, 2) uint64."""
        digests = [
            content_hash(json.dumps(q, ensure_ascii=False, sort_keys=True), tuple(o), size=16)
            for q, o in zip(questions, options, strict=True)
        ]
        return digest_words(digests)

    def lookup(self, keys: np.ndarray) -> dict[int, str | None]:
        """The saved answers, by the question's row in ``keys``."""
        if not self.reuse or not len(keys):
            return {}
        saved = self._read()
        if not saved.height:
            return {}
        query = pl.DataFrame({"k0": keys[:, 0], "k1": keys[:, 1], "row": np.arange(len(keys), dtype=np.int64)})
        hits = query.join(saved, on=["k0", "k1"], how="inner").unique("row", keep="first")
        return dict(zip(hits["row"].to_list(), hits["answer"].to_list(), strict=True))

    def save(self, keys: np.ndarray, answers: Sequence[str | None]) -> None:
        """Save a micro-batch of answers (one per row of ``keys``; the caller leaves out questions that got no
        answer at all)."""
        if not len(keys):
            return
        table = pl.DataFrame({"k0": keys[:, 0], "k1": keys[:, 1], "answer": list(answers)}, schema=COLUMNS).to_arrow()
        write_parquet(table, self.folder / f"{uuid.uuid4().hex}.parquet", row_group_rows=100_000)

    def count(self) -> int:
        """Answers saved for these settings (from the segments' footers: safe while a build writes)."""
        return _count(_segments(self.folder))

    def _read(self) -> pl.DataFrame:
        frames = []
        for path in _segments(self.folder):
            try:
                frames.append(pl.read_parquet(path).select(list(COLUMNS)).cast(COLUMNS))  # type: ignore[arg-type]
            except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as e:
                raise OutputError(
                    f"{path}: not a segment of saved fidelity answers ({str(e)[:200]}); delete it, and the "
                    "build asks its questions again"
                ) from None
        return pl.concat(frames) if frames else pl.DataFrame(schema=COLUMNS)


def _segments(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(TMP_PREFIX))


def answers_saved(root: Path) -> int:
    """Answers saved under ``root`` (every judge's), from the segments' footers: safe while a build writes."""
    return sum(_count(_segments(folder)) for folder in (sorted(root.iterdir()) if root.is_dir() else []))


def _count(segments: Sequence[Path]) -> int:
    total = 0
    for path in segments:
        try:
            total += pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException):  # one being written: counted once it is whole
            continue
    return total
