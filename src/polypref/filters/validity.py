from __future__ import annotations

import polars as pl

from polypref.judges.base import NO_ANSWER


class Validity:
    """Drops judgments without a valid verdict: ``no_answer`` when the judge never got one (a rerun asks
    again), ``invalid`` when it answered badly (unparseable output, refusal, missing ground truth ...), and
    ``identical_texts`` when the pair's two responses are the same text (two generated samples can be): a
    verdict between a text and itself states no preference.

    The judge's error text stays in the ``error`` column; the reason here is the category.
    """

    name = "validity"

    def drop_reason(self) -> pl.Expr:
        error = pl.col("error")
        return (
            pl.when(pl.col("same_text"))
            .then(pl.lit("identical_texts"))
            .when(error.str.starts_with(f"{NO_ANSWER}:"))
            .then(pl.lit(NO_ANSWER))
            .when(error.is_not_null())
            .then(pl.lit("invalid"))
        )
