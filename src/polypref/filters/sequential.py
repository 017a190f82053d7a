"""Adaptive self-consistency: ask for another sample only where the samples so far leave a (persona, pair)
undecided, up to a budget (``judge.samples``).

A fixed ``samples: k`` pays 2k requests for every (persona, pair), though most are settled by the first
swap-consistent sample. Here the build judges in rounds: round ``s`` asks sample ``s`` in both orders, and
after each round the configured filters themselves look at the (persona, pair)s judged so far. One stops when

- **settled**: the filters would keep it now, its chosen side leads every other side by at least
  ``min_lead`` samples' votes (a sequential probability ratio test on the vote: with samples that name the
  true side with odds r, a lead of m stops on the wrong side with odds about r^-m), and the votes' mean stated
  confidence is at least ``stop_confidence`` (a lone sample the judge is unsure of is weak evidence even when
  the filters would keep it: benchmarks/filter_accuracy.py measures what this buys), or
- **futile**: not even the best remaining outcome (every sample left in the budget swap-consistent for the
  leading side, with full confidence) could settle it: the filters will drop it, so more calls are waste, or
- it holds a unit that got **no answer** (the shard stays unfinished; a rerun asks for that unit and goes on).

The rule reads verdict columns only, so it works for every backend; it decides which units are asked, never
what is kept (the filters still do, over the samples each (persona, pair) got). It is a function of the
answers alone, so a rerun that takes answers from the judgment store reaches the same decisions: the same
rows, and no unit asked twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from polypref.filters import filters_from_config
from polypref.filters.base import FilterChain, apply_filters
from polypref.filters.config import AdaptiveConfig, FiltersConfig
from polypref.judges.base import VERDICT_COLUMNS, Judge, collect_verdicts
from polypref.records import PAIR_KEYS, UnitBatch

NOT_ASKED = "identical_texts: not asked, the pair's two responses are the same text"

# What the rule reads per judged unit (``choice`` as shown, A | B | tie; ``same_text``: the pair's two
# responses are one text, so no sample can ever count).
RULE_COLUMNS: dict[str, pl.DataType] = {
    "persona_id": pl.Int64(),
    "pair_id": pl.Int64(),
    "order": pl.String(),
    "sample": pl.Int64(),
    "choice": pl.String(),
    "confidence": pl.Float64(),
    "error": pl.String(),
    "same_text": pl.Boolean(),
}


@dataclass(frozen=True)
class SequentialRule:
    """When a (persona, pair) has had enough samples (see the module docstring)."""

    filters: FiltersConfig
    budget: int  # the most samples any (persona, pair) gets: judge.samples
    min_lead: int = 1
    min_samples: int = 1
    stop_confidence: float = 0.0

    @staticmethod
    def from_config(adaptive: AdaptiveConfig, filters: FiltersConfig, samples: int) -> SequentialRule | None:
        """The build's rule (its ``adaptive`` and ``filters`` sections, judge.samples as the budget), or None for
        a fixed number of samples."""
        if not adaptive.enabled:
            return None
        return SequentialRule(filters, samples, adaptive.min_lead, adaptive.min_samples, adaptive.stop_confidence)

    def ask_again(self, judged: pl.DataFrame, asked: int) -> pl.DataFrame:
        """The (persona_id, pair_id)s of ``judged`` (RULE_COLUMNS: every unit judged so far) that should get
        sample ``asked``, given that samples ``0..asked-1`` were asked; with their state, for inspection:
        ``lead`` (samples' votes), ``settled``, ``futile``, ``pending``."""
        return self.decide(judged, asked).filter("again")

    def decide(self, judged: pl.DataFrame, asked: int) -> pl.DataFrame:
        """Per (persona, pair) of ``judged``: its vote so far and whether to ask again (``again``)."""
        chain = filters_from_config(self.filters)
        frame = judged.select(list(RULE_COLUMNS)).cast(RULE_COLUMNS).with_columns(side=_side())
        # the judgment filters and the vote alone, then the whole chain: what the build would keep now
        voted = apply_filters(frame, FilterChain(judgment=chain.judgment))
        kept = apply_filters(frame, chain).select(kept=pl.col("drop_reason").is_null())
        voting = pl.col("drop_reason").is_null() & pl.col("side").is_not_null()
        per_pair = (
            pl.concat([voted, kept], how="horizontal")
            .group_by(PAIR_KEYS, maintain_order=True)
            .agg(
                v_a=(voting & (pl.col("side") == "a")).sum(),
                v_b=(voting & (pl.col("side") == "b")).sum(),
                v_tie=(voting & (pl.col("side") == "tie")).sum(),
                confidence_sum=pl.col("confidence").filter(voting).sum(),
                kept=pl.col("kept").any(),
                pending=(pl.col("drop_reason") == "no_answer").any(),
                same_text=pl.col("same_text").any(),
            )
        )
        remaining = max(self.budget - asked, 0)
        f = self.filters
        lead = _lead(pl.col("v_a"), pl.col("v_b"), pl.col("v_tie"))
        sure = pl.col("confidence_sum") >= self.stop_confidence * (pl.col("v_a") + pl.col("v_b") + pl.col("v_tie"))
        settled = pl.col("kept") & (lead >= self.min_lead) & sure
        # best case: every remaining sample swap-consistent for one of the sides, at full confidence
        votes = pl.col("v_a") + pl.col("v_b") + pl.col("v_tie") + 2 * remaining
        confident = (pl.col("confidence_sum") + 2 * remaining) >= f.min_confidence * votes
        reachable = pl.lit(False)
        for side, other in (("v_a", "v_b"), ("v_b", "v_a")):
            best = pl.col(side) + 2 * remaining
            rival = pl.max_horizontal(other, "v_tie")
            reachable = reachable | (
                (best > rival) & (best >= f.min_agreement * votes) & ((best - rival) / 2 >= self.min_lead) & confident
            )
        futile = ~reachable | pl.col("same_text")
        must = pl.lit(asked < self.min_samples)
        again = (remaining > 0) & ~pl.col("pending") & ~pl.col("same_text") & (must | (~settled & ~futile))
        return per_pair.with_columns(lead=lead, settled=settled, futile=futile, again=again)


def _side() -> pl.Expr:
    """The side of the pair a shown-order choice names (as dataset.tables does): a, b or tie."""
    choice = pl.col("choice")
    first = (choice == "A") == (pl.col("order") == "AB")
    return (
        pl.when(choice == "tie")
        .then(pl.lit("tie"))
        .when(choice.is_in(["A", "B"]))
        .then(pl.when(first).then(pl.lit("a")).otherwise(pl.lit("b")))
    )


def _lead(a: pl.Expr, b: pl.Expr, tie: pl.Expr) -> pl.Expr:
    """How many samples' votes (two judgments each) the leading response has over every other side."""
    return (pl.max_horizontal(a, b) - pl.max_horizontal(pl.min_horizontal(a, b), tie)) / 2


@dataclass(frozen=True)
class Judged:
    """What a shard's judge was asked: ``rows`` of the full-budget batch (ascending), their ``verdicts``
    (``unit`` = position in ``rows``) and how many of them came from the judgment store."""

    rows: np.ndarray
    verdicts: pl.DataFrame
    reused: int


def judge_in_rounds(
    judge: Judge,
    batch: UnitBatch,
    stored: pl.DataFrame,
    rule: SequentialRule | None,
    on_frame: Callable[[pl.DataFrame], None] | None = None,
) -> Judged:
    """Judge ``batch`` (a shard at the full budget) in rounds of one sample, stopping per (persona, pair) by
    ``rule``; with no rule, every unit in one round (a fixed number of samples).

    ``stored`` holds answers saved before (``unit`` = row of ``batch``): they are used instead of requests.
    ``on_frame`` sees each new micro-batch with ``unit`` = row of ``batch`` (the pipeline saves it), so an
    interrupted shard resumes from its last saved micro-batch.
    """
    stored = stored.select(list(VERDICT_COLUMNS)).cast(VERDICT_COLUMNS)  # type: ignore[arg-type]
    pair_of = batch.persona_idx.astype(np.int64) * len(batch.pairs) + batch.pair_idx
    rounds = [np.arange(len(batch))] if rule is None else [batch.sample == s for s in range(int(rule.budget))]
    active = np.ones(len(batch.personas) * len(batch.pairs), dtype=bool)
    rows_done: list[np.ndarray] = []
    frames: list[pl.DataFrame] = []
    for asked, members in enumerate(rounds):
        rows = members if rule is None else np.flatnonzero(members & active[pair_of])
        if not len(rows):
            break
        frames.append(_judge_rows(judge, batch, rows, stored, on_frame))
        rows_done.append(rows)
        if rule is not None and asked + 1 < rule.budget:
            judged = np.concatenate(rows_done)
            again = rule.ask_again(_rule_frame(batch, judged, pl.concat(frames)), asked + 1)
            active[:] = False
            active[again["persona_id"].to_numpy() * len(batch.pairs) + again["pair_id"].to_numpy()] = True
    judged = np.concatenate(rows_done) if rows_done else np.empty(0, dtype=np.int64)
    order = np.argsort(judged, kind="stable")
    verdicts = pl.concat(frames) if frames else pl.DataFrame(schema=VERDICT_COLUMNS)
    position = np.empty(len(batch), dtype=np.int64)
    position[judged[order]] = np.arange(len(judged))
    verdicts = verdicts.with_columns(unit=pl.Series(position[verdicts["unit"].to_numpy()])).sort("unit")
    reused = int(np.isin(stored["unit"].to_numpy(), judged).sum())
    return Judged(rows=judged[order], verdicts=verdicts, reused=reused)


def _judge_rows(
    judge: Judge,
    batch: UnitBatch,
    rows: np.ndarray,
    stored: pl.DataFrame,
    on_frame: Callable[[pl.DataFrame], None] | None,
) -> pl.DataFrame:
    """Verdicts for ``rows`` of ``batch`` (``unit`` = row of ``batch``, in the order of ``rows``), stored answers
    first. A pair of two identical texts is not asked about: a verdict between a text and itself states no
    preference (the validity filter drops it as identical_texts), so asking would only be paid for."""
    identical = _identical_texts(batch)[batch.pair_idx[rows]]
    if identical.any():
        asked = rows[~identical]
        frames = [_not_asked(rows[identical])]
        if len(asked):
            frames.append(_judge_rows(judge, batch, asked, stored, on_frame))
        return pl.concat(frames).sort("unit")  # rows ascend, so unit order is their order
    if len(rows) == len(batch):
        return collect_verdicts(judge, batch, [stored], on_frame=on_frame)
    position = pl.DataFrame({"unit": rows.astype(np.int64), "_at": np.arange(len(rows), dtype=np.int64)})
    saved = stored.join(position, on="unit", how="inner").with_columns(unit=pl.col("_at")).drop("_at")
    back = pl.Series(rows.astype(np.int64))

    def renumbered(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(unit=back.gather(frame["unit"]))

    def save(frame: pl.DataFrame) -> None:
        if on_frame is not None:
            on_frame(renumbered(frame))

    return renumbered(collect_verdicts(judge, batch.take(rows), [saved], on_frame=save))


def _identical_texts(batch: UnitBatch) -> np.ndarray:
    """Per pair of ``batch``, whether its two responses are the same text (two generated samples can be)."""
    return np.array([p.a.text == p.b.text and p.a.messages == p.b.messages for p in batch.pairs], dtype=bool)


def _not_asked(units: np.ndarray) -> pl.DataFrame:
    """Verdicts of units no request was made for (``attempts`` 0), saved nowhere: they cost nothing to redo."""
    return (
        pl.DataFrame({"unit": units.astype(np.int64)})
        .with_columns(error=pl.lit(NOT_ASKED), attempts=pl.lit(0))
        .with_columns(pl.lit(None).alias(c) for c in VERDICT_COLUMNS if c not in ("unit", "error", "attempts"))
        .select(list(VERDICT_COLUMNS))
        .cast(VERDICT_COLUMNS)  # type: ignore[arg-type]
    )


def _rule_frame(batch: UnitBatch, rows: np.ndarray, verdicts: pl.DataFrame) -> pl.DataFrame:
    """RULE_COLUMNS for the judged ``rows`` of ``batch`` (``verdicts`` in the same order)."""
    same = _identical_texts(batch)
    return pl.DataFrame(
        {
            "persona_id": batch.persona_idx[rows].astype(np.int64),
            "pair_id": batch.pair_idx[rows].astype(np.int64),
            "order": np.where(batch.order[rows] == 0, "AB", "BA"),
            "sample": batch.sample[rows].astype(np.int64),
            "choice": verdicts["choice"],
            "confidence": verdicts["confidence"],
            "error": verdicts["error"],
            "same_text": same[batch.pair_idx[rows]],
        }
    )
