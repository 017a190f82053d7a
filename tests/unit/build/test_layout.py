"""Shards of a source whose pairs outgrow a shard (10^5-10^6 items): one persona's pairs are cut into blocks,
and the build holds the rows a build with whole-persona shards holds."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from polypref import pipeline
from polypref.build.layout import lay_out
from polypref.config import load_config
from polypref.pipeline import planning
from tests.conftest import run_without_prefect

KEYS = {"judgments": ["persona_id", "pair_id", "order", "sample"], "preferences": ["persona_id", "pair_id"]}


def _rows(out: Path, config: str) -> pl.DataFrame:
    return pl.read_parquet(out / "data" / config).drop("run_id", "created_at").sort(KEYS[config])


def test_a_persona_with_more_pairs_than_a_shard_holds_is_cut_into_pair_blocks():
    pairs = tuple(f"{i:032x}" for i in range(7))
    layout, _ = lay_out(None, ("p0", "p1"), pairs, units_per_shard=4, samples=1)  # 14 units per persona
    (part,) = layout.parts
    assert part.pairs_per_shard == 2 and layout.num_shards == 2 * 4
    blocks = [(part.shard_personas(i), part.shard_pairs(i)) for i in range(layout.num_shards)]
    for persona in ((0, 1), (1, 2)):  # every pair of every persona exactly once, in order
        assert sum((b for p, b in blocks if p == persona), ()) == pairs
    # a persona's units that fit a shard keep whole-persona shards
    whole, _ = lay_out(None, ("p0", "p1"), pairs, units_per_shard=28, samples=1)
    assert whole.parts[0].pairs_per_shard is None and whole.num_shards == 1


def test_pair_block_shards_build_the_same_rows_and_resume_from_the_folder(tiny_config, tmp_path):
    small = load_config(tiny_config, ["population.size=6", "output.units_per_shard=4"])
    large = load_config(tiny_config, ["population.size=6", "output.units_per_shard=1000"])
    plan = pipeline.plan(small, tmp_path / "blocks")
    per_persona = len(plan.pairs) * 2
    assert per_persona > 4 and plan.num_shards == 6 * -(-len(plan.pairs) // 2)
    run_without_prefect(plan)
    run_without_prefect(pipeline.plan(large, tmp_path / "whole"))
    for config in KEYS:
        assert _rows(tmp_path / "blocks", config).equals(_rows(tmp_path / "whole", config)), config
    shards = sorted((tmp_path / "blocks" / "data" / "judgments").glob("*.parquet"))
    assert len(shards) == plan.num_shards and max(pl.read_parquet(s).height for s in shards) <= 4
    again = planning._plan(small, tmp_path / "blocks", "config", plan.population.spec, 0, False)
    assert again.keeps_folder and again.num_shards == plan.num_shards  # read back from state.json as written
    shape = [(p.personas, p.pairs, p.personas_per_shard, p.pairs_per_shard) for p in again.layout.parts]
    assert shape == [(p.personas, p.pairs, p.personas_per_shard, p.pairs_per_shard) for p in plan.layout.parts]
