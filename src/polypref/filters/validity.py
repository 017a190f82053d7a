from __future__ import annotations

import polars as pl

from polypref.filters.base import VALID


class Validity:
    """Drops judgments without a valid verdict (unparseable output, refusal, missing ground truth ...).

    The judge's error text stays in the ``error`` column; the reason here is the category.
    """

    name = "validity"

    def drop_reason(self) -> pl.Expr:
        return pl.when(~VALID).then(pl.lit("invalid"))
