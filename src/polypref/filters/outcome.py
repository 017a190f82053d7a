from __future__ import annotations

import polars as pl


class Outcome:
    """A (persona, pair) yields a preference only with a clear majority for one response.

    ``majority`` is null when the top responses are level (say 1 vote each) and "<tie>" when the judges
    said tie most often; neither has a chosen and a rejected response.
    """

    name = "outcome"

    def drop_reason(self) -> pl.Expr:
        return (
            pl.when(pl.col("majority").is_null())
            .then(pl.lit("no_majority"))
            .when(pl.col("majority") == "<tie>")
            .then(pl.lit("tie"))
        )
