from __future__ import annotations

import polars as pl

# The drop reason of a (persona, pair) whose judges said, most often, that the persona has no preference.
INDIFFERENT = "indifferent"


class Indifference:
    """A (persona, pair) whose vote's majority is "tie" leaves ``preferences`` as ``indifferent``.

    Checked before agreement and confidence: indifference is an answer about the persona (the soft labels count
    it), not a doubt about the judge, so it must not hide under ``low_confidence``.
    """

    name = "indifference"

    def drop_reason(self) -> pl.Expr:
        return pl.when(pl.col("majority") == "tie").then(pl.lit(INDIFFERENT))


class Outcome:
    """A (persona, pair) yields a preference only when its vote names one response: ``majority`` is null when
    the leading sides are level (say 1 vote each), and then there is no chosen and no rejected response."""

    name = "outcome"

    def drop_reason(self) -> pl.Expr:
        return pl.when(pl.col("majority").is_null()).then(pl.lit("no_majority"))
