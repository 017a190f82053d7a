from __future__ import annotations

import polars as pl

from polypref.filters.base import VALID
from polypref.records import PAIR_KEYS


class SwapConsistency:
    """Keeps a sample only when its AB and BA verdicts name the same side (or both say tie).

    Position bias shows up as a verdict that follows the slot rather than the content; judging both orders
    and requiring agreement removes it. A sample whose partner verdict is invalid cannot be checked.
    """

    name = "swap_consistency"

    def drop_reason(self) -> pl.Expr:
        keys = [*PAIR_KEYS, "sample"]
        n_valid = VALID.sum().over(keys)
        n_sides = pl.col("side").filter(VALID).n_unique().over(keys)
        return (
            pl.when(n_valid < 2).then(pl.lit("swap_unverifiable")).when(n_sides > 1).then(pl.lit("swap_inconsistent"))
        )
