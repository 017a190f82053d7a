from __future__ import annotations

import polars as pl


class Outcome:
    """A (persona, pair) yields a preference only when its vote names one response.

    ``majority`` is null when the leading sides are level (say 1 vote each) and "tie" when the judges said
    tie most often; neither has a chosen and a rejected response.
    """

    name = "outcome"

    def drop_reason(self) -> pl.Expr:
        majority = pl.col("majority")
        return pl.when(majority.is_null()).then(pl.lit("no_majority")).when(majority == "tie").then(pl.lit("tie"))
