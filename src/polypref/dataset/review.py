"""Candidates for human annotation: the (persona, pair) judgments a synthetic dataset is least sure of.

As Hybrid Preferences routes to people the items where AI judges are unreliable, a build lists two kinds:

* ``group_split``: the persona's social group is split on the pair: among the group's personas that kept a
  preference on it, the share that chose the majority response is below ``GROUP_MAJORITY`` (with at least
  ``MIN_GROUP`` such personas). Every kept preference of the group on the pair is listed.
* ``judge_inconsistent``: the judge contradicted itself on the unit: the persona's judgments of the pair were
  dropped because its orders disagreed (``swap_inconsistent``) or its samples did (``low_agreement``,
  ``no_majority``). ``share`` is the share of its valid judgments on the most chosen side.

Computed over the whole dataset once every shard is written (the ``review`` config), like the weights.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from polypref.splits import split_files

GROUP_MAJORITY = 0.6
MIN_GROUP = 3
INCONSISTENT = ("swap_inconsistent", "low_agreement", "no_majority")
SCHEMA = {"persona_id": pl.String, "pair_id": pl.String, "reason": pl.String, "share": pl.Float64}


def group_splits(
    preferences: pl.LazyFrame, majority: float = GROUP_MAJORITY, min_group: int = MIN_GROUP
) -> pl.LazyFrame:
    """Kept preferences (persona_id, persona_group, pair_id, chosen_id, rejected_id) whose group is split on the
    pair."""
    by = ["persona_group", "pair_id"]
    # a pair has two responses, so the count of one side (the lesser id chosen) gives both: one group_by on two
    # keys, not two on three (at 10^6 pairs, 250 MB less)
    one_side = (pl.col("chosen_id") < pl.col("rejected_id")).sum()
    shares = (
        preferences.group_by(by)
        .agg(pl.len().alias("n"), one_side.alias("k"))
        .select(*by, "n", (pl.max_horizontal("k", pl.col("n") - pl.col("k")) / pl.col("n")).alias("share"))
    )
    split = shares.filter((pl.col("n") >= min_group) & (pl.col("share") < majority)).select(*by, "share")
    rows = preferences.select("persona_id", *by)
    return rows.join(split, on=by).select("persona_id", "pair_id", pl.lit("group_split").alias("reason"), "share")


def inconsistent_judgments(judgments: pl.LazyFrame) -> pl.LazyFrame:
    """Units whose judgments were dropped because the judge disagreed with itself, one row per (persona, pair)."""
    doubted = judgments.filter(pl.col("drop_reason").is_in(INCONSISTENT))
    valid = doubted.filter(pl.col("error").is_null()).with_columns(side=pl.col("winner_id").fill_null("tie"))
    sides = valid.group_by("persona_id", "pair_id", "side").agg(pl.len().alias("votes"))
    return sides.group_by("persona_id", "pair_id").agg(
        pl.lit("judge_inconsistent").alias("reason"), (pl.col("votes").max() / pl.col("votes").sum()).alias("share")
    )


def dataset_review(out: Path) -> pl.DataFrame:
    """The review candidates of a build folder, sorted by persona, pair and reason."""
    found = []
    for config, make in (("preferences", group_splits), ("judgments", inconsistent_judgments)):
        files = split_files(out / "data" / config)  # every split: a group's split is the whole dataset's
        if files:
            found.append(make(pl.scan_parquet(files)).select(list(SCHEMA)).cast(SCHEMA))  # type: ignore[arg-type]
    if not found:
        return pl.DataFrame(schema=SCHEMA)
    return pl.concat(found).sort("persona_id", "pair_id", "reason").collect()
