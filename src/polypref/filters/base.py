"""Filters in two stages around one vote, in this order and no other:

1. judgment filters: each judgment on its own (validity, swap consistency of its sample);
2. the vote: per (persona, pair), over the judgments that survived stage 1 only;
3. pair filters: on the vote's outcome (indifference, agreement, confidence, no majority).

So a preference's chosen response, agreement and judgment count are always those of its kept judgments.
A filter is a polars expression giving a drop reason (null = keep); the first reason a row meets is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from polypref.filters.vote import vote
from polypref.records import PAIR_KEYS

VALID = pl.col("error").is_null()
SURVIVING = pl.col("drop_reason").is_null()


class Filter(Protocol):
    name: str

    def drop_reason(self) -> pl.Expr:
        """Expression over a judgments frame: a reason string to drop the row, or null to keep it.

        Judgment filters see the verdict columns; pair filters also see the vote's columns
        (``n_votes``, ``agreement``, ``majority``) and only rows that survived the judgment filters.
        """
        ...


@dataclass(frozen=True)
class FilterChain:
    judgment: Sequence[Filter] = field(default_factory=tuple)
    pair: Sequence[Filter] = field(default_factory=tuple)


def _first_reason(filters: Sequence[Filter]) -> pl.Expr:
    reasons = [f.drop_reason() for f in filters]
    return (pl.coalesce(reasons) if reasons else pl.lit(None)).cast(pl.String)


def apply_filters(frame: pl.DataFrame, chain: FilterChain) -> pl.DataFrame:
    """Judgment filters, then the vote over survivors, then pair filters on survivors."""
    frame = frame.with_columns(drop_reason=_first_reason(chain.judgment))
    frame = vote(frame, SURVIVING, PAIR_KEYS)
    return frame.with_columns(drop_reason=pl.when(SURVIVING).then(_first_reason(chain.pair)).otherwise("drop_reason"))


def reason_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per drop reason, with "kept" for rows no filter dropped."""
    counts = frame.group_by(pl.col("drop_reason").fill_null("kept")).len().sort("drop_reason")
    return dict(counts.iter_rows())
