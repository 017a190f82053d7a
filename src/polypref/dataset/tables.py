"""Judge output -> the three published tables (judgments, preferences, personas) as polars frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from polypref.filters.base import PAIR_KEYS, VALID
from polypref.judges.base import JudgeInfo
from polypref.records import Persona, ResponsePair, UnitBatch

TIE = "<tie>"  # internal winner marker for a tie verdict; never published


@dataclass(frozen=True)
class RunMeta:
    run_id: str
    created_at: datetime
    judge: JudgeInfo


def _meta_columns(meta: RunMeta) -> list[pl.Expr]:
    return [
        pl.lit(meta.judge.backend).alias("judge_backend"),
        pl.lit(meta.judge.model).alias("judge_model"),
        pl.lit(meta.judge.simulated).alias("simulated"),
        pl.lit(meta.run_id).alias("run_id"),
        pl.lit(meta.created_at, dtype=pl.Datetime("us", "UTC")).alias("created_at"),
    ]


def _winner(choice: str, first: str, second: str) -> pl.Expr:
    return (
        pl.when(pl.col(choice) == "A")
        .then(pl.col(first))
        .when(pl.col(choice) == "B")
        .then(pl.col(second))
        .when(pl.col(choice) == "tie")
        .then(pl.lit(TIE))
    )


def pairs_frame(pairs: Sequence[ResponsePair]) -> pl.DataFrame:
    """One row per pair with its prompt and both responses."""
    return pl.DataFrame(
        {
            "pair_id": [p.id for p in pairs],
            "prompt_id": [p.item.id for p in pairs],
            "topic": [p.item.topic for p in pairs],
            "prompt": [p.item.prompt for p in pairs],
            **{
                f"{side}_{field}": [getattr(getattr(p, side), field) for p in pairs]
                for side in ("a", "b")
                for field in ("id", "text", "stance")
            },
        }
    )


def judgments_frame(batch: UnitBatch, verdicts: pl.DataFrame, meta: RunMeta) -> pl.DataFrame:
    """One row per unit with keys, verdict, resolved winner, and the pair-level agreement and majority."""
    pair = pairs_frame(batch.pairs).select("pair_id", "prompt_id", "topic", "a_id", "b_id")[batch.pair_idx]
    swapped = pl.Series(batch.order == 1)
    frame = (
        pl.concat(
            [
                pl.DataFrame(
                    {
                        "persona_id": pl.Series([p.id for p in batch.personas]).gather(batch.persona_idx),
                        "order": np.where(batch.order == 0, "AB", "BA"),
                        "sample": batch.sample.astype(np.int64),
                    }
                ),
                pair,
                verdicts.drop("unit"),
            ],
            how="horizontal",
        )
        .with_columns(
            first_response_id=pl.when(swapped).then("b_id").otherwise("a_id"),
            second_response_id=pl.when(swapped).then("a_id").otherwise("b_id"),
        )
        .with_columns(
            winner=_winner("choice", "first_response_id", "second_response_id"),
            true_winner=_winner("true_choice", "first_response_id", "second_response_id"),
        )
    )
    votes = pl.len().over([*PAIR_KEYS, "winner"])
    frame = frame.with_columns(votes=pl.when(VALID).then(votes), n_valid=VALID.sum().over(PAIR_KEYS))
    frame = frame.with_columns(top=pl.col("votes").max().over(PAIR_KEYS))
    leader = VALID & (pl.col("votes") == pl.col("top"))
    return frame.with_columns(
        *_meta_columns(meta),
        prompt_template=pl.lit(meta.judge.template, dtype=pl.String),
        agreement=pl.when(pl.col("n_valid") > 0).then(pl.col("top") / pl.col("n_valid")),
        majority=pl.when(pl.col("winner").filter(leader).n_unique().over(PAIR_KEYS) == 1).then(
            pl.col("winner").filter(leader).first().over(PAIR_KEYS)
        ),
    )


def judgments_output(frame: pl.DataFrame) -> pl.DataFrame:
    """The published judgments: internal markers removed (a tie has no winner id)."""
    return frame.with_columns(winner_id=pl.col("winner").replace(TIE, None))


def preferences_frame(frame: pl.DataFrame, batch: UnitBatch, meta: RunMeta) -> pl.DataFrame:
    """One row per (persona, pair) whose judgments all passed the filters, as TRL prompt/chosen/rejected."""
    kept = frame.filter(pl.col("drop_reason").is_null())
    agg = kept.group_by(PAIR_KEYS, maintain_order=True).agg(
        chosen_id=pl.col("majority").first(),
        true_winner=pl.col("true_winner").first(),
        topic=pl.col("topic").first(),
        strength=pl.col("strength").cast(pl.Float64).mean(),
        confidence=pl.col("confidence").mean(),
        agreement=pl.col("agreement").first(),
        n_judgments=pl.len().cast(pl.Int64),
    )
    pairs = pairs_frame(batch.pairs).drop("topic")
    chose_a = pl.col("chosen_id") == pl.col("a_id")
    return (
        agg.join(pairs, on="pair_id", how="left")
        .join(persona_columns(batch.personas), on="persona_id", how="left")
        .join(persona_views(batch.personas), on=["persona_id", "topic"], how="left")
        .with_columns(
            *_meta_columns(meta),
            chosen=pl.when(chose_a).then("a_text").otherwise("b_text"),
            rejected=pl.when(chose_a).then("b_text").otherwise("a_text"),
            rejected_id=pl.when(chose_a).then("b_id").otherwise("a_id"),
            chosen_stance=pl.when(chose_a).then("a_stance").otherwise("b_stance"),
            rejected_stance=pl.when(chose_a).then("b_stance").otherwise("a_stance"),
            matches_ground_truth=pl.when(pl.lit(meta.judge.simulated)).then(
                pl.col("chosen_id") == pl.col("true_winner")
            ),
        )
    )


def persona_columns(personas: Sequence[Persona]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "persona_id": [p.id for p in personas],
            "persona_group": [p.group for p in personas],
            "persona_attributes": [dict(p.attributes) for p in personas],
            "weight": [p.weight for p in personas],
        }
    )


def persona_views(personas: Sequence[Persona]) -> pl.DataFrame:
    rows = [(p.id, topic, view) for p in personas for topic, view in p.attitudes.items()]
    return pl.DataFrame(
        rows, schema={"persona_id": pl.String, "topic": pl.String, "persona_view": pl.String}, orient="row"
    )


def personas_frame(personas: Sequence[Persona], meta: RunMeta) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "persona_id": [p.id for p in personas],
            "spec": [p.spec for p in personas],
            "respondent_id": [p.respondent_id for p in personas],
            "replicate": [p.replicate for p in personas],
            "group": [p.group for p in personas],
            "attributes": [dict(p.attributes) for p in personas],
            "attitudes": [dict(p.attitudes) for p in personas],
            "weight": [p.weight for p in personas],
            "portrayal": [p.portrayal for p in personas],
        }
    ).with_columns(_meta_columns(meta)[-2:])
