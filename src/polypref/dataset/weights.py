"""Fair-PP's sample reweighting: a weight per preference row for training a model toward the row's persona.

Fair-PP (methods notes) weights a target persona's rows by how contested they are: a row's tier is 1 + the
number of other personas whose answer differs, and a tier's weight is (tier / P)^alpha x (1 / rows in the
tier)^beta, normalised over the persona's tiers; every row takes its tier's weight. Rows where the persona
stands apart from the others count more (what is distinctive about it), and no tier dominates by size alone.

Here every persona is a target in turn, so the ``weights`` config has one row per preference row. P is the
number of personas with preferences in the dataset (Fair-PP's 7). A persona with no kept preference on the pair
(the filters dropped it) answers differently when ``missing_as_dissent`` (Fair-PP's N/A), else is left out.
With hundreds of personas raw tiers hold about one row each and beta does nothing, so ``tiers`` bins them into
that many tiers of about equal rows (quantiles over every row of the dataset, numbered 1..tiers); with no more
distinct raw tiers than that, the raw tiers stay, which is Fair-PP's exact computation on 7 personas.

Computed over the whole dataset once every shard is written, and rewritten by a refresh, since new personas
change the tiers. The tiers come from a table of pairs x answers, so the rows are still weighted in parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from polypref.splits import split_files

if TYPE_CHECKING:
    from polypref.config import WeightsConfig

ALPHA = 1.0
BETA = 1.0
TIERS = 7
WEIGHT_COLUMNS = {"persona_id": pl.String, "pair_id": pl.String, "tier": pl.Int64, "weight": pl.Float64}


def fairpp_weights(
    preferences: pl.LazyFrame,
    alpha: float = ALPHA,
    beta: float = BETA,
    tiers: int | None = TIERS,
    missing_as_dissent: bool = True,
) -> pl.DataFrame:
    """Per (persona_id, pair_id) of ``preferences`` (columns persona_id, pair_id, chosen_id): tier and weight,
    sorted by persona and pair. The knobs are the ``weights`` config's (config.WeightsConfig)."""
    parts = list(fairpp_weight_parts(preferences, alpha, beta, tiers, missing_as_dissent))
    return pl.concat(parts) if parts else pl.DataFrame(schema=WEIGHT_COLUMNS)


def fairpp_weight_parts(
    preferences: pl.LazyFrame,
    alpha: float = ALPHA,
    beta: float = BETA,
    tiers: int | None = TIERS,
    missing_as_dissent: bool = True,
    rows_per_part: int = 250_000,
) -> Iterator[pl.DataFrame]:
    """fairpp_weights in consecutive parts of about ``rows_per_part`` rows (whole personas, in persona order):
    what a build of 10^7 judgments writes without holding every row's ids at once. The parts concatenate to
    exactly fairpp_weights' frame: a persona's weights depend only on its own rows and the pairs' tiers."""
    rows = preferences.select("persona_id", "pair_id", "chosen_id")
    per_persona = rows.group_by("persona_id").agg(n=pl.len()).sort("persona_id").collect(engine="streaming")
    persona_ids = per_persona["persona_id"]
    if persona_ids.is_empty():
        return
    # The tier of each answer to each pair: 1 + the personas who answered otherwise (every other persona with
    # preferences, when a missing answer dissents). Computed on a table of pairs x answers, then joined back,
    # with personas and pairs as integer codes in sorted id order: the per-row work runs on three integer
    # columns, not on windows over every row's strings (10^7 rows stay thin).
    answered = pl.lit(len(persona_ids)) if missing_as_dissent else pl.col("chose").sum().over("pair_id")
    answers = (
        rows.group_by("pair_id", "chosen_id")
        .agg(chose=pl.len())
        .select(
            "pair_id",
            "chosen_id",
            "chose",
            tier=(1 + answered - pl.col("chose")).cast(pl.Int64),
            pair=pl.col("pair_id").rank("dense").cast(pl.UInt32),
        )
        .collect(engine="streaming")
    )
    answers = answers.with_columns(tier=binned_tiers(answers["tier"], answers["chose"], tiers)).drop("chose")
    pair_ids = answers.filter(pl.col("pair").is_first_distinct()).sort("pair")["pair_id"]  # lighter than unique()
    # consecutive personas, about rows_per_part rows each (a persona with more rows makes a part of its own)
    part_of = (per_persona["n"].cum_sum() - per_persona["n"]) // max(1, rows_per_part)
    bounds = np.flatnonzero(np.diff(part_of.to_numpy(), prepend=-1))
    for first, end in zip(bounds, [*bounds[1:], len(persona_ids)], strict=True):
        ids = persona_ids.slice(int(first), int(end - first))
        codes = pl.LazyFrame({"persona_id": ids, "persona": np.arange(first, end, dtype=np.uint32)})
        coded = (
            rows.filter(pl.col("persona_id").is_between(pl.lit(ids[0]), pl.lit(ids[-1])))
            .join(answers.lazy(), on=["pair_id", "chosen_id"], nulls_equal=True)
            .join(codes, on="persona_id")
            .select("persona", "pair", "tier")
            .collect(engine="streaming")
        )
        weighted = _weighted(coded, len(persona_ids), alpha, beta)
        yield pl.DataFrame(
            {
                "persona_id": persona_ids.gather(weighted["persona"]),
                "pair_id": pair_ids.gather(weighted["pair"] - 1),
                "tier": weighted["tier"],
                "weight": weighted["weight"],
            }
        )


def binned_tiers(raw: pl.Series, rows: pl.Series, tiers: int | None) -> pl.Series:
    """``raw`` tiers (one per answer to a pair, held by ``rows`` preference rows each) binned into ``tiers``
    tiers of about equal rows, numbered 1..tiers; unchanged when they take no more than ``tiers`` values.

    Each raw tier goes whole to the bin of its middle row's quantile (exact integer arithmetic, so the same
    dataset bins the same way anywhere), adjusted so that no bin is skipped and the last one is reached: every
    tier holds rows even when one raw tier holds more than its share."""
    per_tier = pl.DataFrame({"raw": raw, "rows": rows}).group_by("raw").agg(pl.col("rows").sum()).sort("raw")
    if tiers is None or per_tier.height <= tiers:
        return raw
    counts = per_tier["rows"].to_numpy().astype(np.int64)
    before = np.cumsum(counts) - counts
    quantile_bins = (tiers * (2 * before + counts)) // (2 * int(counts.sum())) + 1
    binned: list[int] = []
    last = 0
    for left, q in zip(range(len(counts) - 1, -1, -1), quantile_bins.tolist(), strict=True):
        last = min(max(q, tiers - left), last + 1)  # enough raw tiers left to reach the last bin, none skipped
        binned.append(last)
    return raw.replace_strict(per_tier["raw"], pl.Series(binned, dtype=pl.Int64), return_dtype=pl.Int64)


def _weighted(coded: pl.DataFrame, personas: int, alpha: float, beta: float) -> pl.DataFrame:
    """Rows (persona, pair, tier) of whole personas with their weight, sorted by persona and pair."""
    per_tier = coded.group_by("persona", "tier").agg(in_tier=pl.len()).sort("persona", "tier")
    raw = (per_tier["tier"] / personas) ** alpha * (1 / per_tier["in_tier"]) ** beta
    # Normalised over the persona's tiers, each tier counted once whatever its number of rows. Summed by numpy
    # in a fixed order: polars' grouped float sums vary with how rows are chunked, and the same dataset must
    # give the same bytes (a rerun must not make a push commit).
    firsts = np.flatnonzero(per_tier["persona"].is_first_distinct().to_numpy())
    counts = np.diff(np.append(firsts, per_tier.height))
    norm = np.repeat(np.add.reduceat(raw.to_numpy(), firsts), counts) if len(firsts) else np.array([])
    weight_of = per_tier.select("persona", "tier", weight=raw / pl.Series(norm, dtype=pl.Float64))
    return coded.join(weight_of, on=["persona", "tier"]).sort("persona", "pair")


def dataset_weights(out: Path, settings: WeightsConfig, rows_per_part: int = 250_000) -> Iterator[pl.DataFrame]:
    """The weights of a build folder's preferences (every shard written so far), in parts (fairpp_weight_parts),
    with the ``weights`` config's knobs; none for a build without preferences."""
    files = split_files(out / "data" / "preferences")  # every split: the weights are the whole dataset's
    if files:
        yield from fairpp_weight_parts(
            pl.scan_parquet(files),
            settings.alpha,
            settings.beta,
            settings.tiers,
            settings.missing_as_dissent,
            rows_per_part=rows_per_part,
        )
