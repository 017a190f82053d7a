"""Fair-PP's sample reweighting: a weight per preference row for training a model toward the row's persona.

Fair-PP (methods notes) weights a target persona's rows by how contested they are: a row's tier is 1 + the
number of other personas whose answer differs, and a tier's weight is (tier / P)^alpha x (1 / rows in the
tier)^beta, normalised over the persona's tiers; every row takes its tier's weight. Rows where the persona
stands apart from the others count more (what is distinctive about it), and no tier dominates by size alone.

Here every persona is a target in turn, so the ``weights`` config has one row per preference row. P is the
number of personas with preferences in the dataset (Fair-PP's 7); "answers differ" compares the personas that
kept a preference on the pair (the filters may have dropped others). Computed over the whole dataset once every
shard is written, and rewritten by a refresh, since new personas change the tiers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

ALPHA = 1.0
BETA = 1.0


def fairpp_weights(preferences: pl.LazyFrame, alpha: float = ALPHA, beta: float = BETA) -> pl.DataFrame:
    """Per (persona_id, pair_id) of ``preferences`` (columns persona_id, pair_id, chosen_id): tier and weight,
    sorted by persona and pair."""
    rows = preferences.select("persona_id", "pair_id", "chosen_id")
    # The tier of each answer to each pair: 1 + the personas who answered otherwise. Computed on a table of
    # pairs x answers, then joined back, with personas and pairs as integer codes in sorted id order: the
    # per-row work runs on three integer columns, not on windows over every row's strings (10^7 rows stay thin).
    answers = (
        rows.group_by("pair_id", "chosen_id")
        .agg(chose=pl.len())
        .select(
            "pair_id",
            "chosen_id",
            tier=(1 + pl.col("chose").sum().over("pair_id") - pl.col("chose")).cast(pl.Int64),
            pair=pl.col("pair_id").rank("dense").cast(pl.UInt32),
        )
        .collect()
    )
    persona_ids = rows.select(pl.col("persona_id").unique().sort()).collect().to_series()
    codes = pl.LazyFrame({"persona_id": persona_ids, "persona": np.arange(len(persona_ids), dtype=np.uint32)})
    coded = (
        rows.join(answers.lazy(), on=["pair_id", "chosen_id"], nulls_equal=True)
        .join(codes, on="persona_id")
        .select("persona", "pair", "tier")
        .collect()
    )
    per_tier = coded.group_by("persona", "tier").agg(in_tier=pl.len()).sort("persona", "tier")
    raw = (per_tier["tier"] / len(persona_ids)) ** alpha * (1 / per_tier["in_tier"]) ** beta
    # Normalised over the persona's tiers, each tier counted once whatever its number of rows. Summed by numpy
    # in a fixed order: polars' grouped float sums vary with how rows are chunked, and the same dataset must
    # give the same bytes (a rerun must not make a push commit).
    firsts = np.flatnonzero(per_tier["persona"].is_first_distinct().to_numpy())
    counts = np.diff(np.append(firsts, per_tier.height))
    norm = np.repeat(np.add.reduceat(raw.to_numpy(), firsts), counts) if len(firsts) else np.array([])
    weight_of = per_tier.select("persona", "tier", weight=raw / pl.Series(norm, dtype=pl.Float64))
    weighted = coded.join(weight_of, on=["persona", "tier"]).sort("persona", "pair")
    pair_ids = answers.filter(pl.col("pair").is_first_distinct()).sort("pair")["pair_id"]  # lighter than unique()
    return pl.DataFrame(
        {
            "persona_id": persona_ids.gather(weighted["persona"]),
            "pair_id": pair_ids.gather(weighted["pair"] - 1),
            "tier": weighted["tier"],
            "weight": weighted["weight"],
        }
    )


def dataset_weights(out: Path) -> pl.DataFrame:
    """The weights of a build folder's preferences (every shard written so far)."""
    files = sorted((out / "data" / "preferences").glob("train-*.parquet"))
    if not files:
        return pl.DataFrame(
            schema={"persona_id": pl.String, "pair_id": pl.String, "tier": pl.Int64, "weight": pl.Float64}
        )
    return fairpp_weights(pl.scan_parquet(files))
