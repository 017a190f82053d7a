"""The offline default judge: an ideal-point persona simulator with exact ground truth.

In the spirit of PersonalLLM's simulated users and PAL's ideal-point model. A persona's attitude on a topic
is a point on the topic's answer scale (0..1); each response's stance is another point. The persona prefers
the response closer to its own point, through a Bradley-Terry choice:

    d        = |attitude - second| - |attitude - first|        (> 0: the first-shown response is closer)
    P(first) = noise / 2 + (1 - noise) * sigmoid(d / temperature + position_bias)

``position_bias`` (a logit) favours whichever response is shown first; ``noise`` is a lapse rate. The
verdict's confidence is the model's probability of the option it chose as the judge reports it: read with
``confidence_noise`` (logistic noise of that standard deviation on the logit, rounded to a percent), because a
real judge's stated confidence is a noisy read of its real chance, and exact ones would make every confidence
filter and calibration look perfect. Strength grows with the reported confidence, and ``true_choice`` records
the noiseless preference so filters can be scored against truth.

Indifference is an outcome: a persona within ``tie_margin`` of equidistant (an "about right" persona judging
"too little" against "too much") has no preference, so its truth is a tie and it says tie, except in a lapse
(probability ``noise``), when it names a response as a forced pick would. Without this, a filter keeps exactly
the coin flips whose noise leaned one way, and publishes them as confident labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from polypref.judges.base import JudgeInfo
from polypref.records import UnitBatch, content_hash, mix64
from polypref.strict import StrictModel

MODEL = "ideal-point-bradley-terry/1"


class SimulatedJudgeConfig(StrictModel):
    backend: Literal["simulated"] = "simulated"
    samples: int = Field(1, ge=1, le=64, description="Judgments per (persona, pair, order)")
    # Defaults as noisy as a small (7-8B) LLM judge is reported to be, so the default dataset shows what the
    # filters are worth (raw verdicts about 0.86 right on pairs with a true preference, kept ones about 1.0):
    # - noise 0.15: repeated identical pairwise judgments flip 13.6% of the time on average for GPT-4o-mini and
    #   GPT-4.1-mini ("The Coin Flip Judge? Reliability and Bias in LLM-as-a-Judge Evaluation", arXiv:2606.13685);
    #   a smaller model is no steadier. With a lapse rate n, two runs of a clear pair differ about n of the time.
    # - position_bias 0.8 (a logit): where the persona has no lean the first-shown response wins 69% of the
    #   time, as GPT-4o-mini's first position is the majority answer on 72% of questions (same study); MT-Bench's
    #   judges lean the same way (Zheng et al. 2023, Table 2: GPT-3.5 is position-consistent on 46% of its
    #   pairs and favours the first position on 50%, Claude-v1 on 24% and 75%).
    # - temperature 0.2: a half-scale stance gap (0.5) is judged right 92% of the time before lapses and bias.
    temperature: float = Field(0.2, gt=0, le=10, description="Bradley-Terry temperature on stance distance")
    position_bias: float = Field(0.8, ge=-10, le=10, description="Logit added in favour of the first response")
    noise: float = Field(0.15, ge=0, le=1, description="Lapse rate: probability of a coin-flip choice")
    tie_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Indifference: a persona whose distances to the two stances differ by less than this has no "
        "preference (its truth is a tie) and says tie, except in a lapse (0: only exact equidistance is a tie, "
        "and the judge never says so)",
    )
    confidence_noise: float = Field(
        1.0, ge=0, le=10, description="Noise (SD, in logits) on the confidence the judge reports; 0 = exact"
    )


class SimulatedJudge:
    def __init__(self, config: SimulatedJudgeConfig, seed: int, workdir: Path | None = None):
        self.config = config
        self.seed = seed
        self.info = JudgeInfo(
            backend="simulated", model=MODEL, simulated=True, params=config.model_dump(exclude={"backend"})
        )

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        att, d, swapped = _distances(batch)
        choice, strength, p_chosen, valid, truth = _verdicts(self.config, self.seed, batch, att, d)
        persona_view, stance_first, stance_second = _shown(batch, swapped)
        frame = pl.DataFrame(
            {
                "unit": np.arange(len(batch), dtype=np.int64),
                "choice": choice,
                "strength": strength,
                "confidence": p_chosen,
                "view": persona_view,
                "first": stance_first,
                "second": stance_second,
                "valid": valid,
                "true_choice": truth,
            }
        )
        yield _answers(frame)

    def close(self) -> None:
        return None


def _distances(batch: UnitBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit: the persona's attitude (NaN: it did not answer the topic), ``d`` (> 0: the first-shown response
    is closer to it) and whether the pair is shown swapped."""
    topics = [pair.item.topic for pair in batch.pairs]
    # attitude per (persona, pair): a small table gathered per unit below
    attitude = np.array(
        [[_nan_if_none(p.positions.get(t)) for t in topics] for p in batch.personas], dtype=np.float64
    ).reshape(len(batch.personas), len(topics))
    pos_a = np.array([pair.a.position for pair in batch.pairs])
    pos_b = np.array([pair.b.position for pair in batch.pairs])

    swapped = batch.order == 1
    first = np.where(swapped, pos_b[batch.pair_idx], pos_a[batch.pair_idx])
    second = np.where(swapped, pos_a[batch.pair_idx], pos_b[batch.pair_idx])
    att = attitude[batch.persona_idx, batch.pair_idx]
    d = np.abs(att - second) - np.abs(att - first)
    return att, d, swapped


def _verdicts(
    cfg: SimulatedJudgeConfig, seed: int, batch: UnitBatch, att: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per unit: the choice, its strength, the confidence reported, whether the persona has an attitude, and the
    noiseless truth."""
    p_first = cfg.noise / 2 + (1 - cfg.noise) / (1 + np.exp(-(d / cfg.temperature + cfg.position_bias)))
    picks_first = unit_uniforms(seed, batch) < p_first
    valid = ~np.isnan(att)
    indifferent = np.abs(d) < cfg.tie_margin
    # an indifferent persona says so, except in a lapse, when the judge names a response anyway
    tie = valid & indifferent & (unit_uniforms(seed + 2, batch) >= cfg.noise)

    p_chosen = np.where(picks_first, p_first, 1 - p_first)
    p_chosen = np.where(tie, 1 - np.abs(2 * p_first - 1), p_chosen)
    p_chosen = _reported(p_chosen, cfg.confidence_noise, unit_uniforms(seed + 1, batch))
    strength = np.clip(np.ceil(5 * (2 * np.nan_to_num(p_chosen) - 1)), 1, 5).astype(np.int8)
    choice = np.where(tie, "tie", np.where(picks_first, "A", "B"))
    truth = np.where(indifferent | (d == 0), "tie", np.where(d > 0, "A", "B"))
    return choice, strength, p_chosen, valid, truth


def _shown(batch: UnitBatch, swapped: np.ndarray) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Per unit: the persona's own answer (its label) and the stances of the first- and second-shown responses."""
    topics = [pair.item.topic for pair in batch.pairs]
    view = [[p.attitudes.get(t) for t in topics] for p in batch.personas]
    flat_view = pl.Series([v for row in view for v in row], dtype=pl.String)
    persona_view = flat_view.gather(batch.persona_idx.astype(np.int64) * len(topics) + batch.pair_idx)
    stance_first = pl.Series([pair.a.stance for pair in batch.pairs]).gather(batch.pair_idx)
    stance_second = pl.Series([pair.b.stance for pair in batch.pairs]).gather(batch.pair_idx)
    stance_first, stance_second = (
        pl.select(pl.when(pl.lit(pl.Series(swapped))).then(pl.lit(b)).otherwise(pl.lit(a))).to_series()
        for a, b in ((stance_first, stance_second), (stance_second, stance_first))
    )
    return persona_view, stance_first, stance_second


def _answers(frame: pl.DataFrame) -> pl.DataFrame:
    """The judgment columns, with a rationale in the persona's words; a unit without an attitude is an error."""
    chosen_stance = pl.when(pl.col("choice") == "A").then(pl.col("first")).otherwise(pl.col("second"))
    rationale = (
        pl.when(pl.col("choice") == "tie")
        .then(pl.format('Both responses are about equally close to my own answer, "{}".', "view"))
        .otherwise(
            pl.format(
                'Response {} takes the stance "{}", closest to my own answer, "{}".',
                "choice",
                chosen_stance,
                "view",
            )
        )
    )
    return frame.select(
        "unit",
        *(pl.when("valid").then(c).alias(c) for c in ("choice", "strength", "confidence", "true_choice")),
        pl.when("valid").then(rationale).alias("rationale"),
        pl.lit(None, dtype=pl.String).alias("raw"),
        pl.when("valid").then(None).otherwise(pl.lit("no attitude: persona did not answer this topic")).alias("error"),
        pl.lit(None, dtype=pl.Int32).alias("prompt_tokens"),
        pl.lit(None, dtype=pl.Int32).alias("completion_tokens"),
        pl.lit(1, dtype=pl.Int16).alias("attempts"),
        pl.lit(None, dtype=pl.String).alias("response_format"),
    )


def unit_uniforms(seed: int, batch: UnitBatch) -> np.ndarray:
    """One uniform draw per unit, a function of (seed, persona, pair, order, sample) alone: the same unit gets
    the same verdict in any batch, so redoing some units of a shard (a resume) reproduces a clean build."""
    persona_keys = np.array([int(content_hash(seed, p.id), 16) for p in batch.personas], dtype=np.uint64)
    pair_keys = np.array([int(content_hash(pair.id), 16) for pair in batch.pairs], dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = mix64(persona_keys[batch.persona_idx] ^ mix64(pair_keys[batch.pair_idx]))
        x = mix64(x ^ (batch.order.astype(np.uint64) << np.uint64(32)) ^ batch.sample.astype(np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _reported(p: np.ndarray, noise: float, u: np.ndarray) -> np.ndarray:
    """The probability ``p`` as the judge states it: logistic noise of standard deviation ``noise`` on its logit
    (from the uniform ``u``), rounded to a percent, as verbal confidences are."""
    if noise == 0:
        return np.round(p, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        clipped = np.clip(p, 1e-4, 1 - 1e-4)
        u = np.clip(u, 1e-12, 1 - 1e-12)
        logit = np.log(clipped / (1 - clipped)) + noise * np.sqrt(3) / np.pi * np.log(u / (1 - u))
    return np.round(1 / (1 + np.exp(-logit)), 2)


def _nan_if_none(value: float | None) -> float:
    return np.nan if value is None else value
