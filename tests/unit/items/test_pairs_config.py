"""The pairs config publishes every pair of a build with its texts: a pair no persona kept can still be read,
and the review, judgments and weights rows (which carry only ids) join it on pair_id."""

from __future__ import annotations

import polars as pl

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import load_with_datasets, run_without_prefect


def test_every_pair_is_published_with_its_texts_and_every_other_config_joins_it(tiny_config, tmp_path):
    out = tmp_path / "out"
    plan = pipeline.plan(load_config(tiny_config, ["population.size=2", "filters.min_confidence=0.9"]), out)
    summary = run_without_prefect(plan)
    pairs = pl.read_parquet(out / "data" / "pairs")
    assert pairs.height == summary["pairs"] == len(plan.pairs) and pairs["pair_id"].is_unique().all()
    by_id = {p.id: p for p in plan.pairs}
    for row in pairs.iter_rows(named=True):
        pair = by_id[row["pair_id"]]
        assert (row["prompt"], row["response_a"], row["response_b"]) == (pair.item.prompt, pair.a.text, pair.b.text)
        assert (row["response_a_id"], row["response_b_id"]) == (pair.a.id, pair.b.id)

    preferences = pl.read_parquet(out / "data" / "preferences")
    never_kept = set(pairs["pair_id"]) - set(preferences["pair_id"])
    assert never_kept  # the filter is strict enough that some pairs have no preference at all
    for config in ("judgments", "review", "weights", "preferences"):
        rows = pl.read_parquet(out / "data" / config)
        assert rows.height and set(rows["pair_id"]) <= set(pairs["pair_id"]), config
    # a preference's texts are its pair's, on the side it names
    joined = preferences.join(pairs, on="pair_id")
    chosen = pl.when(pl.col("chosen_id") == pl.col("response_a_id")).then("response_a").otherwise("response_b")
    assert joined.select((pl.col("chosen") == chosen).all()).item()
    assert load_with_datasets(out, "pairs").num_rows == pairs.height
