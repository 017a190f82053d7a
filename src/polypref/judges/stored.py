"""A judge that makes no request: for reading back answers the workers of a distributed build stored."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from polypref.judges.base import NO_ANSWER, VERDICT_COLUMNS, JudgeInfo
from polypref.records import UnitBatch


class StoredOnlyJudge:
    """Stands for the workers' judge (``info``) where every answer should already be in the store; a unit that
    is not is answered as never answered (counted, and asked again by the next run), not judged here."""

    def __init__(self, info: JudgeInfo):
        self.info = info

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        n = len(batch)
        columns = {name: pl.Series(name, [None] * n, dtype=dtype) for name, dtype in VERDICT_COLUMNS.items()}
        columns["unit"] = pl.Series("unit", range(n), dtype=pl.Int64)
        columns["error"] = pl.Series("error", [f"{NO_ANSWER}: the workers stored no answer"] * n, dtype=pl.String)
        columns["attempts"] = pl.Series("attempts", [0] * n, dtype=pl.Int16)
        yield pl.DataFrame(columns)

    def close(self) -> None:
        return None
