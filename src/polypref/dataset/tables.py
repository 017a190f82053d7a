"""Judge output -> the three published tables (judgments, preferences, personas) as polars frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa

from polypref.analysis.calibration import Calibrator, calibrate, pair_features
from polypref.judges.base import JudgeInfo
from polypref.records import PAIR_KEYS, Message, Messages, Persona, ResponsePair, UnitBatch


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


def _side(choice: str) -> pl.Expr:
    """The side of the pair a shown-order choice names: "a", "b" or "tie" (null for no choice)."""
    shown_first = pl.col("order") == "AB"
    return (
        pl.when(pl.col(choice) == "tie")
        .then(pl.lit("tie"))
        .when(pl.col(choice).is_in(["A", "B"]))
        .then(pl.when((pl.col(choice) == "A") == shown_first).then(pl.lit("a")).otherwise(pl.lit("b")))
    )


MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def conversational(pairs: Sequence[ResponsePair]) -> bool:
    """Whether a build's texts are published as messages: when any prompt or response is a conversation (one
    column holds one kind, and a conversation cannot become a text without losing its turns)."""
    return any(p.item.messages is not None or p.a.messages is not None or p.b.messages is not None for p in pairs)


def _published(text: str, messages: Messages | None, role: str, as_messages: bool) -> str | list[dict[str, str]]:
    """A text as the source had it; in a conversational build a plain text becomes one message of ``role``."""
    if not as_messages:
        return text
    turns = messages if messages is not None else (Message(role, text),)
    return [{"role": m.role, "content": m.content} for m in turns]


def pairs_frame(pairs: Sequence[ResponsePair], as_messages: bool | None = None) -> pl.DataFrame:
    """One row per pair with its prompt and both responses (``*_out``: as published, text or messages; by default
    as ``pairs`` need, ``as_messages`` for part of a build's pairs)."""
    as_messages = conversational(pairs) if as_messages is None else as_messages
    out_type = MESSAGES if as_messages else pl.String
    return pl.DataFrame(
        {
            "pair_id": [p.id for p in pairs],
            "prompt_id": [p.item.id for p in pairs],
            "topic": pl.Series([p.item.topic for p in pairs], dtype=pl.String),
            "prompt": pl.Series(
                [_published(p.item.prompt, p.item.messages, "user", as_messages) for p in pairs], dtype=out_type
            ),
            "source_side": pl.Series([p.source_side for p in pairs], dtype=pl.String),
            **{
                f"{side}_{field}": pl.Series([getattr(getattr(p, side), field) for p in pairs], dtype=pl.String)
                for side in ("a", "b")
                for field in ("id", "stance", "model")
            },
            **{
                f"{side}_out": pl.Series(
                    [
                        _published(getattr(p, side).text, getattr(p, side).messages, "assistant", as_messages)
                        for p in pairs
                    ],
                    dtype=out_type,
                )
                for side in ("a", "b")
            },
        }
    )


def judgments_frame(batch: UnitBatch, verdicts: pl.DataFrame, meta: RunMeta) -> pl.DataFrame:
    """One row per unit with keys and verdict; ``side`` and ``true_side`` say which response of the pair the
    verdict and the simulator's truth name, whatever the order shown. Filters and the vote come after."""
    pairs = pairs_frame(batch.pairs).with_columns(same_text=pl.col("a_out") == pl.col("b_out"))
    pair = pairs.select("pair_id", "prompt_id", "topic", "a_id", "b_id", "same_text")[batch.pair_idx]
    swapped = pl.Series(batch.order == 1)
    return (
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
            side=_side("choice"),
            true_side=_side("true_choice"),
            portrayal_topics=_shown_topics(batch),
        )
        .with_columns(
            *_meta_columns(meta),
            winner_id=pl.when(pl.col("side") == "a").then("a_id").when(pl.col("side") == "b").then("b_id"),
            prompt_template=pl.lit(meta.judge.template, dtype=pl.String),
        )
    )


def _shown_topics(batch: UnitBatch) -> pl.Series:
    """Per unit, the topics its portrayal shows: the distinct lists built once from flat columns, then gathered."""
    lists, index = batch.shown_topics()
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in lists], out=offsets[1:])
    values = pa.array([t for shown in lists for t in shown], pa.string())
    distinct = pl.Series(pa.ListArray.from_arrays(pa.array(offsets), values)).cast(pl.List(pl.String))
    return distinct.gather(index)


def preferences_frame(frame: pl.DataFrame, batch: UnitBatch, meta: RunMeta, calibrator: Calibrator) -> pl.DataFrame:
    """One row per (persona, pair) with kept judgments, as TRL prompt/chosen/rejected.

    Everything here is recomputed from the kept judgments alone, so a row can never contradict them; only
    ``confidence`` also reads the pair's dropped verdicts (its swap and sample agreement), through the build's
    ``calibrator`` (pipeline/calibration.py), so it too is a fixed function of the shard's own judgments.
    """
    kept = frame.filter(pl.col("drop_reason").is_null())
    features = pair_features(frame)
    calibrated = features.select(*PAIR_KEYS).with_columns(calibrate(features, calibrator))
    agg = kept.group_by(PAIR_KEYS, maintain_order=True).agg(
        chosen_side=pl.col("majority").first(),
        true_side=pl.col("true_side").first(),
        topic=pl.col("topic").first(),
        strength=pl.col("strength").cast(pl.Float64).mean(),
        judge_confidence=pl.col("confidence").mean(),
        agreement=(pl.col("side") == pl.col("majority")).mean(),
        n_judgments=pl.len().cast(pl.Int64),
    )
    pairs = pairs_frame(batch.pairs).drop("topic")
    chose_a = pl.col("chosen_side") == "a"
    return (
        agg.join(calibrated, on=PAIR_KEYS, how="left")
        .join(pairs, on="pair_id", how="left")
        .join(persona_columns(batch.personas), on="persona_id", how="left")
        .join(persona_views(batch.personas), on=["persona_id", "topic"], how="left")
        .with_columns(
            *_meta_columns(meta),
            chosen_id=pl.when(chose_a).then("a_id").otherwise("b_id"),
            rejected_id=pl.when(chose_a).then("b_id").otherwise("a_id"),
            chosen=pl.when(chose_a).then("a_out").otherwise("b_out"),
            rejected=pl.when(chose_a).then("b_out").otherwise("a_out"),
            chosen_stance=pl.when(chose_a).then("a_stance").otherwise("b_stance"),
            rejected_stance=pl.when(chose_a).then("b_stance").otherwise("a_stance"),
            chosen_model=pl.when(chose_a).then("a_model").otherwise("b_model"),
            rejected_model=pl.when(chose_a).then("b_model").otherwise("a_model"),
            source_label_agrees=pl.when(pl.col("source_side").is_not_null()).then(
                pl.col("chosen_side") == pl.col("source_side")
            ),
            matches_ground_truth=pl.when(pl.lit(meta.judge.simulated)).then(
                pl.col("chosen_side") == pl.col("true_side")
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


def pair_rows(pairs: Sequence[ResponsePair], as_messages: bool) -> pl.DataFrame:
    """The pairs config: every pair with its texts, so a pair no persona kept can still be read."""
    frame = pairs_frame(pairs, as_messages)
    sides = {f"{s}_{f}": f"response_{s}_{f}" for s in "ab" for f in ("id", "stance", "model")}
    return frame.rename({**sides, "a_out": "response_a", "b_out": "response_b"}).with_columns(
        source_preferred_id=pl.when(pl.col("source_side") == "a")
        .then("response_a_id")
        .when(pl.col("source_side") == "b")
        .then("response_b_id")
    )


def with_source_columns(frame: pl.DataFrame, source_columns: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` with each row's item's kept source columns (``BuildPlan.source_columns``; none kept: as it is)."""
    if source_columns is None:
        return frame
    return frame.join(source_columns, on="prompt_id", how="left", maintain_order="left")


def stamped(frame: pl.DataFrame, meta: RunMeta) -> pl.DataFrame:
    """Rows computed over the whole dataset (the weights and review configs), stamped with the run that did."""
    return frame.with_columns(_meta_columns(meta))


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
