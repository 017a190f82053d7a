"""The Judge protocol: batch in, verdict columns out, failures as rows (never exceptions, never gaps)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from polypref.errors import Interrupted
from polypref.interrupt import signal_name, stop_requested
from polypref.llms.base import ENGINE_ERROR, NO_ANSWER, REJECTED
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
    "attempts": pl.Int16(),  # requests made for this unit (invalid outputs are re-asked)
    "response_format": pl.String(),  # output constraint the answer was asked under (LLM judges); null otherwise
}

# Settings of an LLM backend that change how the work runs (where, how fast, how often retried), never what
# the model answers: the build fingerprint and the generation store ignore them, so changing one resumes.
RUN_SETTINGS = frozenset(
    {
        "micro_batch",  # micro-batches are saved as they finish; their size never shows in the data
        "base_url",  # where the model is served, not which model
        "api_key_env",
        "concurrency",
        "max_concurrency",
        "max_requests_per_minute",
        "max_tokens_per_minute",
        "timeout_s",
        "max_retries",  # transport retries: an answer that never came is retried by a rerun anyway
        "backoff_base_s",
        "backoff_max_s",
        "batch_api",
        "batch_poll_s",
        "prices",
        "gpu_memory_utilization",
        "kv_cache_memory_bytes",
        "tensor_parallel_size",
        "enforce_eager",
        "enable_prefix_caching",
    }
)

# Rows the judgment store leaves out, so that a later build asks for them again (once the credits are topped
# up, the engine has memory, the backend answers). An invalid answer is stored: it was the model's answer.
NOT_STORED = pl.col("error").str.extract(r"^([a-z_]+):").is_in([NO_ANSWER, REJECTED, ENGINE_ERROR]).fill_null(False)


def error_category(error: str | None) -> str | None:
    return None if error is None else error.split(":", 1)[0]


@dataclass(frozen=True)
class JudgeInfo:
    """Provenance that goes into every row and the dataset card."""

    backend: str
    model: str
    simulated: bool
    params: dict[str, Any] = field(default_factory=dict)
    template: str | None = None  # prompt template names and content hashes (LLM judges)


class Judge(Protocol):
    info: JudgeInfo

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        """Yield verdict frames (VERDICT_COLUMNS) covering every unit of the batch exactly once.

        Frames come in micro-batches so a runner can persist work as it finishes.
        """
        ...

    def close(self) -> None: ...


def collect_verdicts(
    judge: Judge,
    batch: UnitBatch,
    saved: Sequence[pl.DataFrame] = (),
    on_frame: Callable[[pl.DataFrame], None] | None = None,
) -> pl.DataFrame:
    """All verdicts of a batch in unit order.

    ``saved`` holds micro-batches finished by an earlier, interrupted run: only the other units are judged.
    ``on_frame`` sees each new micro-batch as it arrives (the pipeline saves it). A judge that loses or
    repeats a unit is a bug, so this raises rather than write a dataset with holes.
    """
    frames = [f.select(list(VERDICT_COLUMNS)).cast(VERDICT_COLUMNS) for f in saved]
    done = np.concatenate([f["unit"].to_numpy() for f in frames]) if frames else np.empty(0, dtype=np.int64)
    remaining = np.setdiff1d(np.arange(len(batch)), done)
    if len(remaining):
        todo = batch if len(remaining) == len(batch) else batch.take(remaining)
        for frame in judge.judge(todo):
            frame = frame.select(list(VERDICT_COLUMNS)).cast(VERDICT_COLUMNS)
            if todo is not batch:  # back to the shard's unit numbers
                frame = frame.with_columns(unit=pl.Series(remaining).gather(frame["unit"]))
            if on_frame is not None:
                on_frame(frame)
            frames.append(frame)
            if stop_requested():  # the micro-batch just finished is saved; stop before asking for more
                raise Interrupted(signal_name())
    verdicts = pl.concat(frames) if frames else pl.DataFrame(schema=VERDICT_COLUMNS)
    verdicts = verdicts.sort("unit")
    if verdicts.height != len(batch) or not verdicts["unit"].equals(pl.Series("unit", range(len(batch)))):
        raise RuntimeError(
            f"judge {judge.info.backend} returned {verdicts.height} verdicts for {len(batch)} units "
            "(units lost or repeated)"
        )
    return verdicts
