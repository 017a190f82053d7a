from __future__ import annotations

import polars as pl


class Agreement:
    """Self-agreement: the share of a (persona, pair)'s voting judgments that name its leading side.

    ``agreement`` comes from the vote (and is published); this filter thresholds it.
    """

    name = "agreement"

    def __init__(self, minimum: float):
        self.minimum = minimum

    def drop_reason(self) -> pl.Expr:
        return pl.when(pl.col("agreement") < self.minimum).then(pl.lit("low_agreement"))
