"""Soft labels: how a pair's personas split, per social group and overall (the ``distributions`` config).

A (persona, pair) counts as its kept preference's side ("a" or "b": the pair's response_a or response_b,
whatever order they were shown in) or as **indifferent** when the filters dropped it because its vote's majority
was a tie: indifference is an answer about the persona, and a soft label that left it out would overstate how
sure the population is. Units dropped for anything else (invalid, swap inconsistent, low agreement or
confidence, no majority, no answer) say nothing about the persona and are not counted.

Each row gives the votes, their shares of the personas counted, and a Wilson 95% interval for share_a and
share_b (it stays inside [0, 1] and is honest for the few personas of a group, where the normal interval is
not). With the simulated judge, the row also gives the true shares: the simulator's noiseless preference of
every persona of the row that judged the pair, counted or not, so what the filters did to the split shows.

Computed over the whole dataset once every shard is written, like the weights. Shards are persona-major and a
(persona, pair)'s judgments all lie in one shard, so the rows are counted one shard at a time into a running
table of (pair, group) counts: memory stays at one shard plus that small table. Written per split like the
preferences (each split's rows count that split's personas alone), so the soft labels in ``train`` never hold
a vote of a held-out persona.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from polypref.splits import FILE_NAME, split_files

# The drop reason of a (persona, pair) whose vote's majority is a tie: "indifferent" now, "tie" in folders
# (and code) from before the rename; both mean the same outcome.
INDIFFERENT_REASONS = ("indifferent", "tie")
Z95 = 1.959964  # two-sided 95% normal quantile
KEYS = ["pair_id", "prompt_id", "topic", "group"]
COUNTS = ["votes_a", "votes_b", "votes_indifferent", "true_a", "true_b", "true_tie"]
JUDGMENT_COLUMNS = [
    "persona_id",
    "pair_id",
    "prompt_id",
    "topic",
    "order",
    "first_response_id",
    "second_response_id",
    "true_choice",
    "drop_reason",
]
_COUNT_SCHEMA = {
    "pair_id": pl.String,
    "prompt_id": pl.String,
    "topic": pl.String,
    "group": pl.String,
} | dict.fromkeys(COUNTS, pl.Int64)


def unit_outcomes(judgments: pl.DataFrame, preferences: pl.DataFrame) -> pl.DataFrame:
    """One row per (persona, pair) of ``judgments`` (columns JUDGMENT_COLUMNS): ``outcome`` "a", "b",
    "indifferent" or null (not counted), from the kept ``preferences`` (persona_id, pair_id, chosen_id) and the
    drop reasons; ``truth`` the simulator's true side ("a", "b", "tie"; null without one)."""
    shown_first = pl.col("order") == "AB"
    truth = (
        pl.when(pl.col("true_choice") == "tie")
        .then(pl.lit("tie"))
        .when(pl.col("true_choice").is_in(["A", "B"]))
        .then(pl.when((pl.col("true_choice") == "A") == shown_first).then(pl.lit("a")).otherwise(pl.lit("b")))
    )
    units = judgments.group_by("persona_id", "pair_id").agg(
        pl.col("prompt_id").first(),
        pl.col("topic").first(),
        a_id=pl.when(shown_first).then("first_response_id").otherwise("second_response_id").first(),
        indifferent=pl.col("drop_reason").is_in(INDIFFERENT_REASONS).any(),
        truth=truth.drop_nulls().first(),
    )
    kept = preferences.select("persona_id", "pair_id", "chosen_id")
    chosen = pl.col("chosen_id")
    return units.join(kept, on=["persona_id", "pair_id"], how="left").select(
        "persona_id",
        "pair_id",
        "prompt_id",
        "topic",
        outcome=pl.when(chosen.is_not_null())
        .then(pl.when(chosen == pl.col("a_id")).then(pl.lit("a")).otherwise(pl.lit("b")))
        .when(pl.col("indifferent"))
        .then(pl.lit("indifferent")),
        truth=pl.col("truth"),
    )


def group_counts(units: pl.DataFrame, groups: pl.DataFrame) -> pl.DataFrame:
    """Counts per (pair, group) of unit_outcomes rows; ``groups``: persona_id -> group (the personas config)."""
    with_group = units.join(groups.select("persona_id", "group"), on="persona_id", how="left")
    if missing := with_group["group"].null_count():
        raise ValueError(f"{missing} judged (persona, pair) units have a persona missing from the personas config")
    outcome, truth = pl.col("outcome"), pl.col("truth")
    return (
        with_group.group_by(KEYS)
        .agg(
            votes_a=(outcome == "a").sum(),
            votes_b=(outcome == "b").sum(),
            votes_indifferent=(outcome == "indifferent").sum(),
            true_a=(truth == "a").sum(),
            true_b=(truth == "b").sum(),
            true_tie=(truth == "tie").sum(),
        )
        .cast(_COUNT_SCHEMA)  # type: ignore[arg-type]
    )


def _summed(counts: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return counts.group_by(keys).agg(pl.col(COUNTS).sum())


def wilson(successes: pl.Expr, n: pl.Expr, z: float = Z95) -> tuple[pl.Expr, pl.Expr]:
    """The Wilson score interval (low, high) of a binomial share successes / n (n > 0). The upper end is 1 minus
    the lower end of the failures' share, so the interval is exactly symmetric and 0 of n starts at 0, n of n
    ends at 1 (no rounding residue)."""

    def low(k: pl.Expr) -> pl.Expr:
        p = k / n
        z2 = z * z
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = z / (1 + z2 / n) * (p * (1 - p) / n + z2 / (4 * n * n)).sqrt()
        return pl.when(k > 0).then((centre - half).clip(0.0, 1.0)).otherwise(0.0)

    return low(successes), 1.0 - low(n - successes)


def distribution_rows(counts: pl.DataFrame) -> pl.DataFrame:
    """The config's rows from (pair, group) counts (group_counts, summed over shards): every (pair, group) and
    each pair overall (group null) with at least one persona counted, sorted by pair, overall row first."""
    overall = _summed(counts, KEYS[:-1]).with_columns(group=pl.lit(None, dtype=pl.String))
    rows = pl.concat([_summed(counts, KEYS), overall.select(counts.columns)])
    n = pl.col("personas")
    known = pl.col("true_a") + pl.col("true_b") + pl.col("true_tie")
    true_n = pl.when(known > 0).then(known)
    a_low, a_high = wilson(pl.col("votes_a"), n)
    b_low, b_high = wilson(pl.col("votes_b"), n)
    return (
        rows.with_columns(personas=pl.sum_horizontal("votes_a", "votes_b", "votes_indifferent"))
        .filter(n > 0)
        .with_columns(
            share_a=pl.col("votes_a") / n,
            share_b=pl.col("votes_b") / n,
            share_indifferent=pl.col("votes_indifferent") / n,
            share_a_low=a_low,
            share_a_high=a_high,
            share_b_low=b_low,
            share_b_high=b_high,
            true_personas=true_n,
            true_share_a=pl.col("true_a") / true_n,
            true_share_b=pl.col("true_b") / true_n,
            true_share_indifferent=pl.col("true_tie") / true_n,
        )
        .drop("true_a", "true_b", "true_tie")
        .sort("pair_id", pl.col("group").is_not_null(), "group")
    )


def dataset_distributions(out: Path, names: list[str]) -> dict[str, pl.DataFrame]:
    """The distributions rows of each of a build folder's splits ``names`` (every shard written so far), one
    shard at a time; a split without a judged persona gets no row."""
    totals = {name: pl.DataFrame(schema=_COUNT_SCHEMA) for name in names}
    files = split_files(out / "data" / "judgments", names)
    if files:
        groups = pl.read_parquet(split_files(out / "data" / "personas"), columns=["persona_id", "group"])
    for path in files:  # a shard's preferences of a split sit beside its judgments, under the same file name
        judgments = pl.read_parquet(path, columns=JUDGMENT_COLUMNS)
        preferences = pl.read_parquet(
            out / "data" / "preferences" / path.name, columns=["persona_id", "pair_id", "chosen_id"]
        )
        part = group_counts(unit_outcomes(judgments, preferences), groups)
        name = FILE_NAME.fullmatch(path.name)["split"]  # type: ignore[index]
        totals[name] = _summed(pl.concat([totals[name], part]), KEYS)
    return {name: distribution_rows(total) for name, total in totals.items()}
