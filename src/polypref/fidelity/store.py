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
``answer``: the option named, or null for a question answered every time without naming one; ``requests``,
``prompt_tokens``, ``completion_tokens``: what asking it cost, retries included, for the card's cost by kind;
null in segments saved before they were kept), written by temp file + rename, so a killed process leaves no
half segment. Questions whose request got no answer at all are not saved: they are asked again.

Repeated samples of one question (``fidelity.samples``) are keyed by their draw as well; draw 0 has the key a
single ask has.
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

from polypref.build.store import digest_words
from polypref.errors import OutputError
from polypref.files import TMP_PREFIX, write_parquet
from polypref.records import content_hash

COLUMNS: dict[str, pl.DataType] = {"k0": pl.UInt64(), "k1": pl.UInt64(), "answer": pl.String()}
SPENT: dict[str, pl.DataType] = {"requests": pl.Int32(), "prompt_tokens": pl.Int64(), "completion_tokens": pl.Int64()}
Messages = list[dict[str, str]]


def settings_key(
    judge_key: str, max_invalid_retries: int | None, reading_code: str, temperature: float | None = None
) -> str:
    """The folder of the answers one judge gives under one retry budget and one way of reading them
    (``reading_code``: the digest of the code that turns a reply into an option); ``temperature``: the
    sampling temperature the check asks at when it draws several samples (None: the judge's own)."""
    parts = (judge_key, max_invalid_retries, reading_code) + (() if temperature is None else (temperature,))
    return content_hash(*parts, size=16)


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
    def keys(
        questions: Sequence[Messages], options: Sequence[Sequence[str]], draws: Sequence[int] | None = None
    ) -> np.ndarray:
        """Each question's 128-bit key as (n, 2) uint64 (``draws``: each one's sample number, 0 by default)."""
        digests = [
            content_hash(json.dumps(q, ensure_ascii=False, sort_keys=True), tuple(o), *((d,) if d else ()), size=16)
            for q, o, d in zip(questions, options, draws or [0] * len(questions), strict=True)
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

    def save(self, keys: np.ndarray, answers: Sequence[str | None], spent: dict[str, Sequence[int]]) -> None:
        """Save a micro-batch of answers (one per row of ``keys``; the caller leaves out questions that got no
        answer at all) with what each cost (``spent``: a list per column of SPENT)."""
        if not len(keys):
            return
        columns = {"k0": keys[:, 0], "k1": keys[:, 1], "answer": list(answers), **{k: spent[k] for k in SPENT}}
        table = pl.DataFrame(columns, schema=COLUMNS | SPENT).to_arrow()
        write_parquet(table, self.folder / f"{uuid.uuid4().hex}.parquet", row_group_rows=100_000)

    def count(self) -> int:
        """Answers saved for these settings (from the segments' footers: safe while a build writes)."""
        return _count(_segments(self.folder))

    def _read(self) -> pl.DataFrame:
        frames = []
        for path in _segments(self.folder):
            try:
                frames.append(_segment(path))
            except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as e:
                raise OutputError(
                    f"{path}: not a segment of saved fidelity answers ({str(e)[:200]}); delete it, and the "
                    "build asks its questions again"
                ) from None
        return pl.concat(frames) if frames else pl.DataFrame(schema=COLUMNS | SPENT)


def _segment(path: Path) -> pl.DataFrame:
    """One segment's rows, the cost columns null in a segment saved before costs were kept."""
    frame = pl.read_parquet(path)
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in SPENT.items() if c not in frame.columns]
    return frame.with_columns(missing).select(list(COLUMNS | SPENT)).cast(COLUMNS | SPENT)  # type: ignore[arg-type]


def _segments(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(TMP_PREFIX))


def _every_segment(root: Path) -> list[Path]:
    """The segments of every judge's settings under ``root``."""
    return [path for folder in (sorted(root.iterdir()) if root.is_dir() else []) for path in _segments(folder)]


def spent(root: Path) -> dict[str, int | None]:
    """What every answer saved under ``root`` cost, whichever judge's settings asked it: requests and tokens.
    An answer saved before costs were kept counts one request, and leaves the tokens unknown (None); a segment
    that cannot be read (one being written, or damaged: ``lookup`` names it) is left out of the count."""
    totals: dict[str, int | None] = dict.fromkeys(SPENT, 0)
    for path in _every_segment(root):
        try:
            frame = _segment(path)
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException):
            continue
        totals["requests"] = int(totals["requests"] or 0) + int(frame["requests"].fill_null(1).sum() or 0)
        for kind in ("prompt_tokens", "completion_tokens"):
            previous = totals[kind]
            unknown = previous is None or frame[kind].null_count() > 0
            totals[kind] = None if previous is None or unknown else previous + int(frame[kind].sum() or 0)
    return totals


def answers_saved(root: Path) -> int:
    """Answers saved under ``root`` (every judge's), from the segments' footers: safe while a build writes."""
    return _count(_every_segment(root))


def _count(segments: Sequence[Path]) -> int:
    total = 0
    for path in segments:
        try:
            total += pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException):  # one being written: counted once it is whole
            continue
    return total
