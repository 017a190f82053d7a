"""The Judge protocol: batch in, verdict columns out, failures as rows (never exceptions, never gaps)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from polypref.records import UnitBatch

# What every judge returns per unit; ``unit`` is the row number in the batch.
VERDICT_COLUMNS: dict[str, pl.DataType] = {
    "unit": pl.Int64(),
    "choice": pl.String(),  # A | B | tie, null when invalid
    "strength": pl.Int8(),
    "confidence": pl.Float64(),
    "rationale": pl.String(),
    "raw": pl.String(),  # the model's raw output (LLM judges), kept for invalid ones too
    "error": pl.String(),  # why the verdict is invalid; null = valid
    "true_choice": pl.String(),  # simulator's ground truth in shown order; null for LLM judges
    "prompt_tokens": pl.Int32(),
    "completion_tokens": pl.Int32(),
}


@dataclass(frozen=True)
class JudgeInfo:
    """Provenance that goes into every row and the dataset card."""

    backend: str
    model: str
    simulated: bool
    params: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    info: JudgeInfo

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        """Yield verdict frames (VERDICT_COLUMNS) covering every unit of the batch exactly once.

        Frames come in micro-batches so a runner can persist work as it finishes.
        """
        ...

    def close(self) -> None: ...


def collect_verdicts(judge: Judge, batch: UnitBatch) -> pl.DataFrame:
    """All verdicts of a batch in unit order; a judge that loses or repeats a unit is a bug, so it raises."""
    frames = [f.select(list(VERDICT_COLUMNS)).cast(VERDICT_COLUMNS) for f in judge.judge(batch)]
    verdicts = pl.concat(frames) if frames else pl.DataFrame(schema=VERDICT_COLUMNS)
    verdicts = verdicts.sort("unit")
    if verdicts.height != len(batch) or not verdicts["unit"].equals(pl.Series("unit", range(len(batch)))):
        raise RuntimeError(
            f"judge {judge.info.backend} returned {verdicts.height} verdicts for {len(batch)} units "
            "(units lost or repeated)"
        )
    return verdicts
