"""The one wrapper judge the tests put around a real judge, to see or break what it does."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from polypref.judges.base import NO_ANSWER, Judge
from polypref.records import UnitBatch


class WrapperJudge:
    """A real judge (the simulator, say) behind a wrapper that counts the units it is asked (``asked``) and splits
    its answers into micro-batches of ``micro`` units (None: as the judge gives them). Told to, it breaks as the
    world does: a worker killed after ``crash_after`` micro-batches, a worker that dies on shard ``fail_on``, an
    API outage that answers nothing for the unit keys in ``failing``. With ``failing`` given (even empty),
    ``asked_keys`` lists the keys of the units asked."""

    def __init__(
        self,
        judge: Judge,
        micro: int | None = 7,
        crash_after: int | None = None,
        fail_on: int | None = None,
        failing: set[str] | None = None,
    ):
        self.inner, self.info, self.micro = judge, judge.info, micro
        self.crash_after, self.fail_on, self.failing = crash_after, fail_on, failing
        self.asked = 0
        self.asked_keys: list[str] = []
        self.frames = 0

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        if self.fail_on is not None and batch.shard == self.fail_on:
            raise RuntimeError("worker died")
        self.asked += len(batch)
        keys = [batch.unit(i).key for i in range(len(batch))] if self.failing is not None else []
        self.asked_keys += keys
        return self._answers(batch, keys)

    def _answers(self, batch: UnitBatch, keys: list[str]) -> Iterator[pl.DataFrame]:
        for frame in self.inner.judge(batch):
            if self.failing:
                frame = self._outage(frame, keys)
            step = self.micro or frame.height or 1
            for start in range(0, frame.height, step):
                if self.crash_after is not None and self.frames == self.crash_after:
                    raise RuntimeError("worker killed")
                self.frames += 1
                yield frame.slice(start, step)

    def _outage(self, frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        down = pl.Series([keys[u] in self.failing for u in frame["unit"]])
        return frame.with_columns(
            error=pl.when(down).then(pl.lit(f"{NO_ANSWER}: HTTP 503 after 8 retries")).otherwise("error"),
            choice=pl.when(down).then(None).otherwise("choice"),
        )

    def close(self) -> None:
        self.inner.close()
