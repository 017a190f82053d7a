"""The distributions config of a real build (the tiny survey, the simulated judge, several shards): it loads with
`datasets`, its overall rows agree with the preferences and judgments configs, and the build records its file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.dataset.distributions import INDIFFERENT_REASONS
from tests.conftest import load_with_datasets, run_without_prefect

pytestmark = pytest.mark.integration


def test_distributions_load_and_agree_with_preferences_and_judgments(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = load_config(tiny_config, ["judge.tie_margin=0.05"])  # "mid" personas are indifferent to low vs high
    plan = pipeline.plan(config, out)
    assert plan.num_shards > 1  # the rows are counted shard by shard
    summary = run_without_prefect(plan)

    splits = sorted({p.name.split("-")[0] for p in (out / "data" / "distributions").glob("*.parquet")})
    assert splits == ["test", "train"]  # 60 personas: some held out
    total = 0
    for split in splits:  # each split's rows count that split's personas alone
        total += _check_split(out, split)
    assert total == summary["distributions"] > 0

    # the card declares it, and the build recorded its file (a push verifies recorded files)
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert "distributions" in [c["config_name"] for c in front["configs"]]
    assert "## Soft labels" in (out / "README.md").read_text()
    state = BuildState(out)
    assert "data/distributions/train-00000.parquet" in state.recorded_files()
    assert state.whole_build_problems() == []


def _check_split(out: Path, split: str) -> int:
    """One split's distributions against that split's preferences and judgments; returns its rows."""
    loaded = load_with_datasets(out, "distributions", split=split)
    rows = pl.from_arrow(loaded.data.table)
    overall = rows.filter(pl.col("group").is_null())
    groups = rows.filter(pl.col("group").is_not_null())

    preferences = pl.read_parquet(sorted((out / "data" / "preferences").glob(f"{split}-*.parquet")))
    judgments = pl.read_parquet(sorted((out / "data" / "judgments").glob(f"{split}-*.parquet")))
    pairs = pl.read_parquet(out / "data" / "pairs")
    # every pair with a preference has an overall row whose a + b votes are its preferences, side by side
    kept = (
        preferences.join(pairs.select("pair_id", "response_a_id"), on="pair_id")
        .group_by("pair_id")
        .agg(a=(pl.col("chosen_id") == pl.col("response_a_id")).sum().cast(pl.Int64), n=pl.len().cast(pl.Int64))
    )
    votes = overall.join(kept, on="pair_id", how="full", coalesce=True).fill_null(0)
    assert (votes["votes_a"] + votes["votes_b"]).to_list() == votes["n"].to_list()
    assert votes["votes_a"].to_list() == votes["a"].to_list()
    # and whose indifferent votes are the (persona, pair) units the filters dropped as indifferent (or "tie")
    tied = (
        judgments.filter(pl.col("drop_reason").is_in(INDIFFERENT_REASONS))
        .group_by("pair_id")
        .agg(tied=pl.struct("persona_id").n_unique().cast(pl.Int64))
    )
    indifferent = overall.join(tied, on="pair_id", how="full", coalesce=True).fill_null(0)
    assert indifferent["votes_indifferent"].to_list() == indifferent["tied"].to_list()
    if split == "train":
        assert overall["votes_indifferent"].sum() > 0  # the check above compared something

    # the group rows add up to the overall ones, and name the personas' groups
    summed = groups.group_by("pair_id").agg(pl.col("personas", "votes_a", "votes_b", "votes_indifferent").sum())
    assert summed.sort("pair_id").equals(
        overall.select("pair_id", "personas", "votes_a", "votes_b", "votes_indifferent").sort("pair_id")
    )
    assert set(groups["group"]) <= set(pl.read_parquet(out / "data" / "personas")["group"])
    assert ((rows["share_a_low"] <= rows["share_a"]) & (rows["share_a"] <= rows["share_a_high"])).all()

    # the simulator's truth covers every persona that judged the pair with a known preference, counted or not
    truth = (
        judgments.filter(pl.col("true_choice").is_not_null())
        .group_by("pair_id")
        .agg(known=pl.col("persona_id").n_unique().cast(pl.Int64))
    )
    known = overall.join(truth, on="pair_id", how="left")
    assert known["true_personas"].to_list() == known["known"].to_list()
    shares = overall["true_share_a"] + overall["true_share_b"] + overall["true_share_indifferent"]
    assert shares.to_list() == pytest.approx([1.0] * overall.height)

    return rows.height
