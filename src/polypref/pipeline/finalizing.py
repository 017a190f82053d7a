"""Finalizing a build: the per-build tables (pairs, weights, review, map, distributions, episodes), the
summary and the card."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from polypref import splits
from polypref.analysis import evaluate as evaluation
from polypref.analysis.calibration import calibration_report
from polypref.analysis.preference_map import dataset_map, render_png
from polypref.build.documents import ShardReport, Summary
from polypref.build.plan import BuildPlan, RunState
from polypref.build.report import summarize
from polypref.build.state import MAP_PNG
from polypref.dataset import card
from polypref.dataset.configs import CONFIGS, FINAL_CONFIGS, shard_path
from polypref.dataset.distributions import dataset_distributions
from polypref.dataset.episodes import split_episodes
from polypref.dataset.review import dataset_review
from polypref.dataset.schema import arrow_schema, to_arrow
from polypref.dataset.tables import (
    RunMeta,
    pair_rows,
    stamped,
    with_source_columns,
)
from polypref.dataset.weights import WEIGHT_COLUMNS, dataset_weights
from polypref.files import (
    WrittenFile,
    write_bytes,
    write_parquet,
    write_parquet_parts,
    write_parquet_parts_together,
    write_parquet_together,
)
from polypref.judges import JudgeInfo
from polypref.pipeline.calibration import calibrator_for
from polypref.pipeline.shards import other_requests
from polypref.population.representatives import summary as representatives_summary


def finalize(
    plan: BuildPlan,
    run: RunState,
    reports: list[ShardReport],
    judge: JudgeInfo,
    persona_free: pl.DataFrame | None = None,
) -> Summary:
    """Write the weights, review candidates and preference-space map (over the whole dataset), the dataset card
    and the build summary (summary.json), and return the summary. ``persona_free``: the judge's votes without a
    persona (persona_free_votes), placed on the map."""
    if sorted(r.index for r in reports) != list(range(plan.num_shards)):
        raise RuntimeError(f"finalize needs all {plan.num_shards} shard reports, got {len(reports)}")
    # over every shard: a refresh's new personas change every tier and every group's split
    meta = RunMeta(run.run_id, run.created_at, judge)
    spec = plan.population.spec
    written: dict[Path, WrittenFile] = {}
    _write_pairs(plan, meta, written)
    counts = _write_weights_and_review(plan, meta, written)
    counts["distributions"] = _write_distributions(plan, meta, written)
    counts["episodes"] = _write_episodes(plan, meta, written)
    points = dataset_map(plan.out, persona_free)
    path = shard_path(plan.out, "map", 0)
    written[path] = write_parquet(to_arrow("map", stamped(points, meta)), path, plan.config.output.row_group_rows)
    plan.state.drop_unwritten(FINAL_CONFIGS, written)
    plan.state.record_files(written)
    render_png(points, plan.out / MAP_PNG, plan.config.output.pretty_name)
    summary = replace(
        summarize(plan, run, reports, judge, other_requests(plan, judge.simulated)),
        **counts,
        # over every shard's preferences: the confidence column measured against truth, where there is any
        calibration=calibration_report(plan.out, judge, calibrator_for(judge)),
        map=points.height,  # rows, as for every config (the card's dataset_info reads them)
        preference_map=map_summary(points),
        representatives=representatives_summary(plan.population),
        # the shares and each config's rows per split: the card declares the splits that have rows
        splits=splits.summary(plan.out, plan.config.output.splits, CONFIGS),
        # how much a persona's own labels say beyond the population's, on the held-out personas
        personalization=evaluation.for_card(
            plan.out, plan.config.output.splits, {t: spec.scale(t) for t in spec.attitudes.items}
        ),
    )
    write_bytes(card.render(plan, summary).encode(), plan.out / "README.md")
    plan.state.write_summary(summary)
    return summary


def _write_distributions(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> int:
    """The distributions config, a file per split of the population (each split's personas alone); its rows."""
    names = list(plan.split_names)
    tables = [
        (to_arrow("distribution", stamped(rows, meta)), shard_path(plan.out, "distributions", 0, name))
        for name, rows in dataset_distributions(plan.out, names).items()
    ]
    made = write_parquet_together(tables, plan.config.output.row_group_rows)
    written.update(zip([path for _, path in tables], made, strict=True))
    return sum(w.rows for w in made)


def _write_episodes(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> int | None:
    """The episodes config (output.episodes), a file per split of the preferences; its rows, None when off."""
    settings = plan.config.output.episodes
    if settings is None:
        return None
    fields = {"persona_attributes": list(plan.population.spec.attributes)}
    rows = 0
    for name in plan.split_names:
        files = splits.split_files(plan.out / "data" / "preferences", [name])

        def parts(files: list[Path] = files) -> Iterator[pa.Table]:
            yield arrow_schema("episode", fields, plan.conversational).empty_table()  # the schema, if no rows
            for part in split_episodes(files, settings.shots, settings.seed):
                yield to_arrow("episode", stamped(part, meta), fields, messages=plan.conversational)

        path = shard_path(plan.out, "episodes", 0, name)
        written[path] = write_parquet_parts(parts(), path, plan.config.output.row_group_rows)
        rows += written[path].rows
    return rows


PAIRS_PER_PART = 100_000  # pairs made into rows at a time: a source of 10^6 items stays flat


def _write_pairs(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> None:
    """The pairs config: every pair of the build with its texts, in one file written part by part."""

    def parts() -> Iterator[pa.Table]:
        for start in range(0, max(len(plan.pairs), 1), PAIRS_PER_PART):  # no pair: the schema alone
            rows = with_source_columns(
                pair_rows(plan.pairs[start : start + PAIRS_PER_PART], plan.conversational), plan.source_columns
            )
            yield to_arrow("pair", stamped(rows, meta), plan.struct_fields, messages=plan.conversational)

    path = shard_path(plan.out, "pairs", 0)
    written[path] = write_parquet_parts(parts(), path, plan.config.output.row_group_rows)


def _write_weights_and_review(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> dict[str, Any]:
    """Write the weights and review configs, one at a time (each has a row per preference, so neither is kept
    while the other is made; the weights are written in parts); return what the summary says of them. Adds
    what each file holds to ``written``."""
    personas = []
    # a file per split of the population's personas (splits.py), computed over the whole dataset as before
    shares, names = plan.config.output.splits, plan.split_names

    def parts() -> Iterator[dict[str, pa.Table]]:
        empty = to_arrow("weight", stamped(pl.DataFrame(schema=WEIGHT_COLUMNS), meta))
        yield dict.fromkeys(names, empty)  # the schema, if no rows
        # about 250,000 rows (whole personas) at a time: 10^7 stay flat
        for part in dataset_weights(plan.out, plan.config.weights):
            personas.append(part["persona_id"].n_unique())
            yield {name: to_arrow("weight", stamped(f, meta)) for name, f in splits.by_split(part, shares, names)}

    rows = plan.config.output.row_group_rows
    weights = {name: shard_path(plan.out, "weights", 0, name) for name in names}
    made = write_parquet_parts_together(parts(), weights, rows)
    written.update(made)
    counts: dict[str, Any] = {"weights": sum(w.rows for w in made.values()), "personas_with_preferences": sum(personas)}
    review = dataset_review(plan.out)
    tables = [
        (to_arrow("review", stamped(f, meta)), shard_path(plan.out, "review", 0, name))
        for name, f in splits.by_split(review, shares, names)
    ]
    written.update(zip([path for _, path in tables], write_parquet_together(tables, rows), strict=True))
    reasons = dict(review["reason"].value_counts().sort("reason").iter_rows())
    return counts | {"review": review.height, "review_reasons": reasons}


def map_summary(points: pl.DataFrame) -> dict[str, Any]:
    """What the card says about the map: how much the axes explain, and where the persona-free runs landed."""
    runs = points.filter(pl.col("kind") == "persona-free")
    return {
        "personas": points.height - runs.height,
        "explained": [round(float(points[c][0]), 4) if points.height else 0.0 for c in ("explained_x", "explained_y")],
        "persona_free": [
            {"label": r["point_id"], "x": round(r["x"], 3), "y": round(r["y"], 3), "pairs": r["n_pairs"]}
            for r in runs.iter_rows(named=True)
        ],
    }
