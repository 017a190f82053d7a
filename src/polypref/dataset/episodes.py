"""Few-shot episodes (FSPO's layout): per persona, ``shots`` of its preferences with their texts and the rest as
``queries`` (the ``episodes`` config, on with ``output.episodes``).

A persona's labels are taken in ``splits.shot_order`` (a seeded hash of the persona and pair alone), so its
shots are the same whatever else the dataset holds, and ``polypref evaluate`` with the same seed uses the same
first k labels as shots. A persona with ``shots`` preferences or fewer has no query and no episode.

Written per split (a persona's episode sits in its split's file, like its preferences), made anew at the end of
every build from the preferences files. Personas are taken a slice at a time (sorted by id, about
``ROWS_PER_PART`` preferences each), so memory follows the slice, not the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from polypref.dataset.schema import LABEL_FIELDS
from polypref.splits import shot_order

ROWS_PER_PART = 500_000
LABEL_COLUMNS = list(LABEL_FIELDS)
PERSONA_COLUMNS = ["persona_id", "persona_group", "persona_attributes"]


def episodes_frame(preferences: pl.DataFrame, shots: int, seed: int) -> pl.DataFrame:
    """One row per persona of ``preferences`` with more than ``shots`` of them, sorted by persona_id: its first
    ``shots`` labels in shot order as ``shots``, the rest, in the same order, as ``queries``."""
    order = [shot_order(seed, p, q) for p, q in zip(preferences["persona_id"], preferences["pair_id"], strict=True)]
    ranked = preferences.with_columns(order=pl.Series(order, dtype=pl.Binary)).sort("persona_id", "order")
    grouped = ranked.group_by("persona_id", maintain_order=True).agg(
        pl.col("persona_group").first(),
        pl.col("persona_attributes").first(),
        labels=pl.struct(LABEL_COLUMNS),
    )
    n = pl.col("labels").list.len()
    return grouped.filter(n > shots).select(
        *PERSONA_COLUMNS,
        seed=pl.lit(seed, pl.Int64),
        n_shots=pl.lit(shots, pl.Int64),
        n_queries=(n - shots).cast(pl.Int64),
        shots=pl.col("labels").list.head(shots),
        queries=pl.col("labels").list.slice(shots),
    )


def split_episodes(
    files: list[Path], shots: int, seed: int, rows_per_part: int = ROWS_PER_PART
) -> Iterator[pl.DataFrame]:
    """The episodes of the personas in one split's preferences ``files``, a slice of personas at a time."""
    if not files:
        return
    columns = [*PERSONA_COLUMNS, *LABEL_COLUMNS]
    counts = pl.scan_parquet(files).group_by("persona_id").len().sort("persona_id").collect()
    total = sum(pq.read_metadata(f).num_rows for f in files)
    if total <= rows_per_part:
        yield episodes_frame(pl.read_parquet(files, columns=columns), shots, seed)
        return
    slice_of = (counts["len"].cum_sum() - counts["len"]) // rows_per_part  # the slice each persona falls in
    for _, personas in counts.with_columns(slice=slice_of).group_by("slice", maintain_order=True):
        wanted = personas["persona_id"].implode()
        part = pl.scan_parquet(files).select(columns).filter(pl.col("persona_id").is_in(wanted)).collect()
        yield episodes_frame(part, shots, seed)
