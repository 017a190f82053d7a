from __future__ import annotations

import polars as pl


class Agreement:
    """Self-agreement: the share of a (persona, pair)'s valid judgments that name its majority response.

    ``agreement`` is computed once in the judgments frame (it is also published); this filter thresholds it.
    """

    name = "agreement"

    def __init__(self, minimum: float):
        self.minimum = minimum

    def drop_reason(self) -> pl.Expr:
        return pl.when(pl.col("agreement") < self.minimum).then(pl.lit("low_agreement"))
