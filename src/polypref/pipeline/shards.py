"""Judging one shard (and the persona-free run): judged, filtered and written on its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from polypref import progress, splits
from polypref.build.documents import ShardReport
from polypref.build.layout import pairs_per_shard
from polypref.build.plan import BuildPlan, RunState
from polypref.build.report import shard_stats
from polypref.dataset.configs import shard_path
from polypref.dataset.schema import to_arrow
from polypref.dataset.tables import (
    RunMeta,
    judgments_frame,
    preferences_frame,
    with_source_columns,
)
from polypref.files import write_parquet_together
from polypref.filters import apply_filters, filters_from_config
from polypref.filters.sequential import Judged, SequentialRule, judge_in_rounds
from polypref.generation import load_store
from polypref.judges import Judge
from polypref.judges.base import VERDICT_COLUMNS
from polypref.pipeline import fidelity as fidelity_run
from polypref.pipeline.calibration import calibrator_for
from polypref.population.baseline import persona_free
from polypref.records import UnitBatch, content_hash, record_digest

log = logging.getLogger("polypref.pipeline")


def shard_report(plan: BuildPlan, index: int) -> ShardReport | None:
    """The report of a shard with nothing left to do (its file is written last, so it marks completion)."""
    report = plan.state.read_report(index)
    if report is None:
        if plan.state.report_path(index).exists():  # damaged, or written by another version: redone, not trusted
            log.warning("shard %d: unreadable report %s; judging the shard again", index, plan.state.report_path(index))
        return None
    return report if report.done else None


def run_shard(plan: BuildPlan, run: RunState, index: int, judge: Judge) -> ShardReport:
    """Judge, filter and write one shard; a finished shard is skipped, so reruns resume.

    Units that never got an answer are written as such (the card counts them) but not saved as done: the
    shard stays unfinished and a rerun asks again for exactly those units. With ``adaptive.enabled`` the shard
    is judged in rounds of one sample (filters/sequential.py) and holds only the units the rule asked for.
    """
    if (done := shard_report(plan, index)) is not None:
        progress.advance(progress.JUDGING, done.planned or done.units)
        return replace(done, reused=done.units)
    plan.store.recall(index)  # judged earlier in this process, and its files went missing since: its answers count
    batch = plan.batch(index)
    part = plan.layout.part_of(index)
    meta = RunMeta(part.run_id or run.run_id, run.created(part.created_at), judge.info)
    planned = len(batch)
    saved: list[Path] = []
    batch, frame, preferences, judged = _judge_and_filter(plan, batch, plan.unit_keys(batch), judge, meta, saved)
    rows = plan.config.output.row_group_rows

    attribute_names = list(plan.population.spec.attributes)
    # a file per config and split of the shard's personas (splits.py), all written together
    shares = plan.config.output.splits
    start, end = part.shard_personas(index)
    names = splits.present((p.id for p in plan.population.personas[start:end]), shares)
    tables = [
        (to_arrow("judgment", rows_of, plan.struct_fields), shard_path(plan.out, "judgments", index, name))
        for name, rows_of in splits.by_split(with_source_columns(frame, plan.source_columns), shares, names)
    ] + [
        (
            to_arrow(
                "preference",
                rows_of,
                {"persona_attributes": attribute_names, **plan.struct_fields},
                messages=plan.conversational,
            ),
            shard_path(plan.out, "preferences", index, name),
        )
        for name, rows_of in splits.by_split(with_source_columns(preferences, plan.source_columns), shares, names)
    ]
    files = write_parquet_together(tables, rows)
    report = replace(
        shard_stats(index, frame, preferences),
        reused=judged.reused,
        planned=planned,
        files={path.relative_to(plan.out).as_posix(): w for (_, path), w in zip(tables, files, strict=True)},
    )
    plan.state.write_report(report)
    plan.store.forget(index, saved)  # the report skips this shard from now on
    return report


def _judge_and_filter(
    plan: BuildPlan, batch: UnitBatch, keys: np.ndarray, judge: Judge, meta: RunMeta, saved: list[Path] | None = None
) -> tuple[UnitBatch, pl.DataFrame, pl.DataFrame, Judged]:
    """Judge a batch (answers stored before are used, new ones saved as each micro-batch arrives), filter and
    vote: the batch of the units actually judged (adaptive sampling asks only some of the budget), their
    judgments, the preferences, and what was judged. ``saved`` gets the store segments written."""
    stored = plan.store.lookup(keys)  # judged before: by an interrupted run, or by a build with other settings
    rows = plan.config.output.row_group_rows
    asked = 0

    def save(frame: pl.DataFrame) -> None:
        nonlocal asked
        if (path := plan.store.save(keys, frame, rows)) is not None and saved is not None:
            saved.append(path)
        asked += frame.height
        progress.advance(progress.JUDGING, frame.height)

    judged = judge_in_rounds(
        judge,
        batch,
        stored,
        SequentialRule.from_config(plan.config.adaptive, plan.config.filters, plan.config.judge.samples),
        on_frame=save,
    )
    # the rest of the batch is resolved too: found stored, not asked (identical texts), or left by adaptive sampling
    progress.advance(progress.JUDGING, len(batch) - asked)
    if len(judged.rows) < len(batch):
        batch = batch.take(judged.rows)
    frame = judgments_frame(batch, judged.verdicts, meta)
    frame = apply_filters(frame, filters_from_config(plan.config.filters))
    return batch, frame, preferences_frame(frame, batch, meta, calibrator_for(meta.judge)), judged


def _persona_free_batches(plan: BuildPlan, simulated: bool) -> Iterator[tuple[UnitBatch, np.ndarray]]:
    """The persona-free run's units, in blocks of a shard (flat memory), with their keys in the store."""
    free = persona_free(plan.population)
    # an LLM judge sees no portrayal, so its answers hold whatever the population: a grown one asks nothing
    # again; the simulator answers from the population's modal attitudes, so its key names them
    digest = record_digest(free) if simulated else content_hash("persona-free", free.portrayal, size=16)
    samples = plan.config.judge.samples
    step = pairs_per_shard(plan.config.output.units_per_shard, samples)
    for start in range(0, len(plan.pairs), step):
        batch = UnitBatch.persona_major((free,), plan.pairs[start : start + step], samples, shard=-1)
        yield batch, plan.unit_keys(batch, persona_digests=[digest])


def persona_free_votes(plan: BuildPlan, run: RunState, judge: Judge) -> pl.DataFrame:
    """The same judge's kept votes on every pair of the build without a persona (population.baseline): where the
    preference-space map places the model itself. Stored like any judgment, so a rerun asks nothing."""
    meta = RunMeta(run.run_id, run.created_at, judge.info)
    votes = []
    for batch, keys in _persona_free_batches(plan, judge.info.simulated):
        _, _, preferences, _ = _judge_and_filter(plan, batch, keys, judge, meta)
        votes.append(preferences.select("pair_id", "chosen_id", "rejected_id"))
    label = "no persona (simulator)" if judge.info.simulated else f"no persona: {judge.info.model}"
    frame = (
        pl.concat(votes)
        if votes
        else pl.DataFrame(schema={"pair_id": pl.String, "chosen_id": pl.String, "rejected_id": pl.String})
    )
    return frame.select(pl.lit(label).alias("label"), "pair_id", "chosen_id", "rejected_id")


def other_requests(plan: BuildPlan, simulated: bool) -> dict[str, dict[str, int | None]]:
    """The model requests a build made beyond its personas' judgments, whichever run made them, with their
    tokens where they are recorded: the persona-free run's (from the judgment store), the fidelity check's
    (from its answer store) and the generated responses' (from their store).
    The simulated judge asks no model."""

    def spent(frame: pl.DataFrame) -> dict[str, int | None]:
        return {
            "requests": int(frame["attempts"].sum() or 0),
            "prompt_tokens": int(frame["prompt_tokens"].sum() or 0),
            "completion_tokens": int(frame["completion_tokens"].sum() or 0),
        }

    kinds: dict[str, dict[str, int | None]] = {}
    if not simulated:
        stored = [plan.store.lookup(keys) for _, keys in _persona_free_batches(plan, simulated)]
        kinds["persona_free"] = spent(pl.concat(stored) if stored else pl.DataFrame(schema=VERDICT_COLUMNS))
        if plan.config.fidelity.check:
            kinds["fidelity_questions"] = fidelity_run.spent(plan)
    if plan.config.generate is not None:
        ids = [r.id for item in plan.items for r in item.responses]
        rows = load_store(plan.state.generated_dir).filter(pl.col("response_id").is_in(ids))
        kinds["generation"] = spent(rows.sort("attempts").unique("response_id", keep="last"))  # runs add up in a row
    return kinds
