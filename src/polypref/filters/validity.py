from __future__ import annotations

import polars as pl

from polypref.judges.base import NO_ANSWER


class Validity:
    """Drops judgments without a valid verdict: ``no_answer`` when the judge never got one (a rerun asks
    again), ``invalid`` when it answered badly (unparseable output, refusal, missing ground truth ...).

    The judge's error text stays in the ``error`` column; the reason here is the category.
    """

    name = "validity"

    def drop_reason(self) -> pl.Expr:
        error = pl.col("error")
        return (
            pl.when(error.str.starts_with(f"{NO_ANSWER}:"))
            .then(pl.lit(NO_ANSWER))
            .when(error.is_not_null())
            .then(pl.lit("invalid"))
        )
