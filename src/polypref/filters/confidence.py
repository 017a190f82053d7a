from __future__ import annotations

import polars as pl

from polypref.filters.base import SURVIVING
from polypref.records import PAIR_KEYS


class Confidence:
    """Drops a (persona, pair) whose voting judgments' mean confidence is below the threshold.

    Applied per pair rather than per judgment so the surviving judgments still cover both orders: dropping
    single low-confidence verdicts would reintroduce the position bias the swap filter removed.
    """

    name = "confidence"

    def __init__(self, minimum: float):
        self.minimum = minimum

    def drop_reason(self) -> pl.Expr:
        mean = pl.col("confidence").filter(SURVIVING).mean().over(PAIR_KEYS)
        return pl.when(mean < self.minimum).then(pl.lit("low_confidence"))
