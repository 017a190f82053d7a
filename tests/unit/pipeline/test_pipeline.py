"""The core pipeline without Prefect: counts, determinism, resume and output-folder safety."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.errors import ConfigError, OutputError
from polypref.judges import make_judge
from tests.conftest import run_without_prefect
from tests.judges import WrapperJudge

VOLATILE = ["run_id", "created_at"]


def build(config_path: Path, out: Path, overrides: tuple[str, ...] = ()) -> dict:
    return run_without_prefect(pipeline.plan(load_config(config_path, list(overrides)), out))


def read(out: Path, config: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((out / "data" / config).glob("*.parquet"))).drop(VOLATILE)


def test_counts_are_consistent(tiny_config, tmp_path):
    summary = build(tiny_config, tmp_path / "out", ("judge.samples=3",))
    personas, pairs = 60, 6
    judgments = read(tmp_path / "out", "judgments")
    preferences = read(tmp_path / "out", "preferences")
    assert summary["judgments"] == judgments.height == personas * pairs * 2 * 3
    assert 0 < summary["preferences"] == preferences.height <= personas * pairs
    assert read(tmp_path / "out", "personas").height == personas
    assert summary["shards"] > 1  # the tiny config forces several shards
    assert sum(summary["reasons"].values()) == judgments.height
    kept = judgments.filter(pl.col("drop_reason").is_null())
    assert kept.select("persona_id", "pair_id").unique().height == preferences.height
    assert preferences["n_judgments"].sum() == kept.height


def test_same_config_and_seed_give_identical_parquet(tiny_config, tmp_path):
    build(tiny_config, tmp_path / "a")
    build(tiny_config, tmp_path / "b")
    build(tiny_config, tmp_path / "c", ("seed=4",))
    for config in ("preferences", "judgments", "personas"):
        a, b = read(tmp_path / "a", config), read(tmp_path / "b", config)
        assert a.equals(b), config
    assert not read(tmp_path / "a", "judgments").equals(read(tmp_path / "c", "judgments"))
    raw_a = pl.read_parquet(tmp_path / "a" / "data" / "judgments")
    raw_b = pl.read_parquet(tmp_path / "b" / "data" / "judgments")
    assert raw_a["run_id"][0] != raw_b["run_id"][0]


def test_a_crashed_run_resumes_and_matches_a_clean_build(tiny_config, tmp_path):
    out = tmp_path / "out"
    config = load_config(tiny_config)
    plan = pipeline.plan(config, out)
    run = pipeline.prepare_output(plan)
    judge = WrapperJudge(make_judge(config.judge, config.seed), micro=None, fail_on=2)
    pipeline.run_shard(plan, run, 0, judge)
    pipeline.run_shard(plan, run, 1, judge)
    with pytest.raises(RuntimeError, match="worker died"):
        pipeline.run_shard(plan, run, 2, judge)
    assert not list((out / "data").rglob(".tmp-*"))  # nothing half-written
    first = (out / "data" / "judgments" / "train-00000.parquet").stat().st_mtime_ns

    resumed = build(tiny_config, out)  # the same command again
    assert (out / "data" / "judgments" / "train-00000.parquet").stat().st_mtime_ns == first
    build(tiny_config, tmp_path / "clean")
    for name in ("preferences", "judgments", "personas"):
        assert read(out, name).equals(read(tmp_path / "clean", name)), name
    assert resumed["run_id"] == run.run_id


def test_output_folder_is_never_mixed(tiny_config, tmp_path):
    out = tmp_path / "out"
    first = build(tiny_config, out)
    stored = BuildState(out).stored_judgments()
    assert stored == first["judgments"] + first["pairs"] * 2  # the persona-free run's judgments are stored too
    config = load_config(tiny_config, ["seed=99"])
    run = pipeline.prepare_output(pipeline.plan(config, out))  # other settings: the dataset is replaced...
    # the old build is gone; the new one starts with its personas (written first, so a partial build loads)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["personas"]
    assert set(pl.read_parquet(out / "data" / "personas")["run_id"]) == {run.run_id}
    assert BuildState(out).stored_judgments() == stored  # ... and every judgment it paid for is kept
    pipeline.prepare_output(pipeline.plan(config, out), overwrite=True)
    assert BuildState(out).stored_judgments() == 0  # --overwrite discards them too

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        pipeline.prepare_output(pipeline.plan(config, stranger), overwrite=True)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_restricted_specs_are_opt_in(tiny, tiny_config, tmp_path):
    spec = yaml.safe_load(tiny["spec"].read_text())
    spec["terms_class"] = "non_commercial"
    tiny["spec"].write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"population\.accept_terms"):
        pipeline.plan(load_config(tiny_config), tmp_path / "o")
    accepted = pipeline.plan(load_config(tiny_config, ["population.accept_terms=true"]), tmp_path / "o")
    assert len(accepted.population.personas) == 60


def test_shipped_ess_spec_is_opt_in_and_its_card_says_so(tmp_path):
    ess = ["population.spec=ess9_gb_immigration", "items.source=ess_immigration", "population.size=50"]
    config = tmp_path / "ess.yaml"
    config.write_text("{}\n")
    with pytest.raises(ConfigError, match="non-commercial"):
        build(config, tmp_path / "refused", tuple(ess))
    assert not (tmp_path / "refused").exists()
    summary = build(config, tmp_path / "ess", (*ess, "population.accept_terms=true"))
    assert summary["judgments"] == 50 * 9 * 2
    card = (tmp_path / "ess" / "README.md").read_text()
    assert "Restricted source (non-commercial)" in card and "CC BY-NC-SA 4.0" in card


def test_an_empty_shard_still_loads_with_datasets(tiny_config, tmp_path):
    import pyarrow.parquet as pq

    from polypref.files import write_parquet

    out = tmp_path / "out"
    summary = build(tiny_config, out)
    shards = sorted((out / "data" / "preferences").glob("*.parquet"))
    first = pq.read_table(shards[0])
    write_parquet(first.slice(0, 0), shards[0], 1000)  # as if every pair of shard 0 had been filtered out
    assert pq.ParquetFile(shards[0]).metadata.num_row_groups == 0
    # an empty row group here broke the reader: "BatchSize must be greater than 0, got 0"
    # read the shard files directly: the card declares the build's real row counts, which this edit breaks
    import datasets

    files = [str(p) for p in shards]
    loaded = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "c"))
    assert loaded.num_rows == summary["preferences"] - first.num_rows > 0


def test_two_builds_in_folders_of_the_same_name_load_their_own_rows(tiny_config, tmp_path):
    import datasets

    cache = str(tmp_path / "one-shared-cache")  # as for a user: one datasets cache for everything
    for folder, size in (("a", 20), ("b", 30)):
        build(tiny_config, tmp_path / folder / "out", (f"population.size={size}",))
        personas = datasets.load_dataset(str(tmp_path / folder / "out"), "personas", split="train", cache_dir=cache)
        assert personas.num_rows == size  # b once got a's 20 cached rows
