"""The vote of one (persona, pair): which side its surviving judgments name, and how unanimously.

Judgments vote by ``side``: "a" or "b" (the pair's responses, whatever order they were shown in) or "tie".
Sides, not response ids, so no response id can collide with a marker.
"""

from __future__ import annotations

import polars as pl

SIDES = ("a", "b", "tie")


def vote(frame: pl.DataFrame, voting: pl.Expr, keys: list[str]) -> pl.DataFrame:
    """Add ``n_votes``, ``agreement`` (share of votes for the leading side) and ``majority`` (the leading side,
    null when two sides are level) to every row of each (persona, pair), counting only ``voting`` rows."""
    is_vote = voting & pl.col("side").is_not_null()
    frame = frame.with_columns(
        _votes=is_vote.cast(pl.Int64).sum().over([*keys, "side"]),
        n_votes=is_vote.cast(pl.Int64).sum().over(keys),
        _is_vote=is_vote,
    )
    top = pl.when("_is_vote").then("_votes").max().over(keys)
    leader = pl.col("_is_vote") & (pl.col("_votes") == top)
    return frame.with_columns(
        agreement=pl.when(pl.col("n_votes") > 0).then(top / pl.col("n_votes")),
        majority=pl.when(pl.col("side").filter(leader).n_unique().over(keys) == 1).then(
            pl.col("side").filter(leader).first().over(keys)
        ),
    ).drop("_votes", "_is_vote")
