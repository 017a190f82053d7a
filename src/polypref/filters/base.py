"""A filter is a polars expression giving a drop reason (null = keep); the first reason wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import polars as pl

PAIR_KEYS = ["persona_id", "pair_id"]  # one (persona, pair) = one potential preference row
VALID = pl.col("error").is_null()


class Filter(Protocol):
    name: str

    def drop_reason(self) -> pl.Expr:
        """Expression over a judgments frame: a reason string to drop the row, or null to keep it."""
        ...


def apply_filters(frame: pl.DataFrame, filters: Sequence[Filter]) -> pl.DataFrame:
    reasons = [f.drop_reason() for f in filters]
    drop = pl.coalesce(reasons) if reasons else pl.lit(None, dtype=pl.String)
    return frame.with_columns(drop_reason=drop.cast(pl.String))


def reason_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per drop reason, with "kept" for rows no filter dropped."""
    counts = frame.group_by(pl.col("drop_reason").fill_null("kept")).len().sort("drop_reason")
    return dict(counts.iter_rows())
