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
    personas = rows.select(pl.col("persona_id").n_unique()).collect().item()
    tiers = rows.with_columns(
        tier=(
            1 + pl.len().over("pair_id") - pl.len().over("pair_id", "chosen_id")  # others who chose otherwise
        ).cast(pl.Int64)
    ).with_columns(in_tier=pl.len().over("persona_id", "tier"))
    raw = (pl.col("tier") / personas) ** alpha * (1 / pl.col("in_tier")) ** beta
    # Normalised over the persona's tiers, each tier counted once whatever its number of rows. Summed by numpy
    # in a fixed order: polars' grouped float sums vary with how rows are chunked, and the same dataset must
    # give the same bytes (a rerun must not make a push commit).
    per_tier = (
        tiers.select("persona_id", "tier", raw.alias("raw")).unique(["persona_id", "tier"]).sort("persona_id", "tier")
    ).collect()
    firsts = np.flatnonzero(per_tier["persona_id"].is_first_distinct().to_numpy())
    norm = pl.LazyFrame(
        {
            "persona_id": per_tier["persona_id"].gather(firsts),
            "norm": np.add.reduceat(per_tier["raw"].to_numpy(), firsts) if len(firsts) else [],
        },
        schema={"persona_id": pl.String, "norm": pl.Float64},
    )
    return (
        tiers.join(norm, on="persona_id")
        .select("persona_id", "pair_id", "tier", (raw / pl.col("norm")).alias("weight"))
        .sort("persona_id", "pair_id")
        .collect()
    )


def dataset_weights(out: Path) -> pl.DataFrame:
    """The weights of a build folder's preferences (every shard written so far)."""
    files = sorted((out / "data" / "preferences").glob("train-*.parquet"))
    if not files:
        return pl.DataFrame(
            schema={"persona_id": pl.String, "pair_id": pl.String, "tier": pl.Int64, "weight": pl.Float64}
        )
    return fairpp_weights(pl.scan_parquet(files))
