"""Representative personas: k medoids per group stand for the sampled population with their clusters' weight."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from polypref import pipeline
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.population import load_spec, sample_population
from polypref.population.representatives import (
    Represented,
    choose,
    cluster,
    distances,
    positions_matrix,
    represent,
    summary,
)
from polypref.records import Persona, content_hash, record_digest
from tests.conftest import REPO, run_cli, run_without_prefect

TOPICS = ("t1", "t2")


def persona(i: int, group: str, t1: float | None, t2: float | None = 0.0, weight: float = 1.0) -> Persona:
    return Persona(
        id=content_hash("test", i),
        spec="test",
        respondent_id=str(i),
        replicate=0,
        group=group,
        attributes={},
        attitudes={"t1": None if t1 is None else str(t1), "t2": None if t2 is None else str(t2)},
        positions={"t1": t1, "t2": t2},
        weight=weight,
        portrayal=f"persona {i}",
    )


def test_distance_is_the_rms_gap_with_half_a_scale_for_one_missing_answer() -> None:
    a = np.array([[0.0, np.nan], [1.0, 0.5]])
    b = np.array([[1.0, 0.5], [0.0, np.nan], [1.0, 0.5]])
    d = distances(a, b)
    assert d[0, 0] == pytest.approx(math.sqrt((1.0 + 0.25) / 2))  # one gap of 1, one missing answer
    assert d[0, 1] == 0.0  # both skipped t2: the same view
    assert d[1, 0] == d[1, 2] == 0.0 and d[1, 1] == d[0, 0]
    assert d[0, 2] == d[0, 0]


def test_obvious_clusters_give_their_medoids_and_summed_weights() -> None:
    # two groups interleaved as a sample is; in "a", a low cluster around 0.1 and a high one around 0.9
    personas = [
        persona(0, "a", 0.9),
        persona(1, "b", 0.5),
        persona(2, "a", 0.0),
        persona(3, "a", 1.0),
        persona(4, "a", 0.1),
        persona(5, "b", 0.5, weight=2.0),
        persona(6, "a", 0.2),
        persona(7, "a", 0.8),
        persona(8, "b", 0.5),
    ]
    clusters = choose(personas, TOPICS, 2, seed=0)
    by_index = {c.index: c for c in clusters}
    assert sorted(by_index) == [0, 1, 4]  # group a's medoids 0.9 (persona 0) and 0.1 (persona 4); b's one
    assert by_index[0].members == (0, 3, 7) and by_index[0].persona.weight == 3.0
    assert by_index[4].members == (2, 4, 6) and by_index[4].persona.weight == 3.0
    # b's three personas share one profile, so they are one cluster: the first stands for all
    assert by_index[1].members == (1, 5, 8) and by_index[1].persona.weight == 4.0
    assert by_index[0].persona.id == personas[0].id and by_index[0].persona.portrayal == "persona 0"
    # weights move the medoid: make 0.0 heavy and it represents the low cluster
    heavy = [*personas[:2], persona(2, "a", 0.0, weight=5.0), *personas[3:]]
    low = next(c for c in choose(heavy, TOPICS, 2, seed=0) if 2 in c.members)
    assert low.index == 2 and low.persona.weight == 7.0 and low.members == (2, 4, 6)


def test_missing_answers_cluster_together() -> None:
    personas = [persona(i, "a", 0.5, None) for i in range(3)] + [persona(3 + i, "a", 0.5, 0.5) for i in range(3)]
    clusters = choose(personas, TOPICS, 2, seed=1)
    assert [c.members for c in clusters] == [(0, 1, 2), (3, 4, 5)]


def test_k_at_least_the_group_size_keeps_every_persona_unchanged() -> None:
    personas = [persona(i, "ab"[i % 2], i / 10) for i in range(6)]
    clusters = choose(personas, TOPICS, 3, seed=0)
    assert tuple(c.persona for c in clusters) == tuple(personas)
    assert [c.members for c in clusters] == [(i,) for i in range(6)]


def test_fewer_profiles_than_k_give_one_representative_per_profile() -> None:
    medoids, labels = cluster(np.array([[0.5], [0.0], [0.5], [0.0], [1.0]]), np.ones(5), 4, seed=0)
    assert medoids.tolist() == [0, 1, 4] and labels.tolist() == [0, 1, 0, 1, 2]


def test_big_clusters_try_the_profiles_nearest_their_mean() -> None:
    low, high = [0.0, 0.05, 0.1, 0.15, 0.2], [0.8, 0.85, 0.9, 0.95, 1.0]
    positions = np.array([[x, x] for x in (*high, *low)])
    medoids, labels = cluster(positions, np.ones(10), 2, seed=3, candidates=2)
    assert medoids.tolist() == [2, 7]  # 0.9 and 0.1, found among only 2 candidates per cluster
    assert labels.tolist() == [0] * 5 + [1] * 5


@pytest.fixture
def tiny_spec(tiny: dict[str, Path]):
    return load_spec(str(tiny["spec"]))


@pytest.mark.parametrize("allocation", ["proportional", "equal"])
def test_weights_sum_to_each_groups_share(tiny_spec, allocation: str) -> None:
    sampled = sample_population(tiny_spec, 400, allocation, seed=4)
    population = represent(sampled, 3, seed=4)
    assert isinstance(population, Represented)
    assert all(n == 3 for n in population.group_counts.values())  # each group has more than 3 profiles
    assert sum(population.stands_for) == 400
    for group, share in sampled.group_shares.items():
        kept = [p.weight for p in population.personas if p.group == group]
        drawn = [p.weight for p in sampled.personas if p.group == group]
        assert math.fsum(kept) == pytest.approx(math.fsum(drawn), rel=1e-12)
        if allocation == "equal":  # 100 per group: the weights restore the population shares exactly
            assert math.fsum(kept) / 400 == pytest.approx(share, rel=1e-12)
    ids = {p.id: p for p in sampled.personas}
    for p in population.personas:  # every representative is a sampled persona, its weight aside
        assert p.id in ids and p.portrayal == ids[p.id].portrayal and p.positions == ids[p.id].positions
    figures = summary(population)
    assert figures is not None and figures["representatives"] == 12 and figures["sampled_personas"] == 400
    assert {g: v["sampled"] for g, v in figures["groups"].items()} == sampled.group_counts
    assert summary(sampled) is None


def test_the_same_seed_gives_the_same_representatives_and_another_may_not(tiny_spec) -> None:
    sampled = sample_population(tiny_spec, 300, "proportional", seed=0)
    first = represent(sampled, 2, seed=0)
    assert represent(sampled, 2, seed=0) == first
    assert any(represent(sampled, 2, seed=s).personas != first.personas for s in range(1, 6))


_SCRIPT = """
import json
from polypref.population import load_spec, sample_population
from polypref.population.representatives import represent
from polypref.records import record_digest
population = represent(sample_population(load_spec("gss_spending"), 600, "equal", seed=5), 4, seed=5)
print(json.dumps([record_digest(p) for p in population.personas]))
"""


@pytest.mark.process
def test_representatives_do_not_depend_on_hash_seed_or_threads() -> None:
    outputs = []
    for hash_seed, threads in (("1", "1"), ("2", "2")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1] and len(outputs[0]) > 24


profiles = st.lists(
    st.tuples(
        st.sampled_from("abc"),
        st.sampled_from([None, 0.0, 0.25, 0.5, 0.75, 1.0]),
        st.sampled_from([None, 0.0, 0.5, 1.0]),
        st.sampled_from([0.5, 1.0, 3.0]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rows=profiles, k=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_representatives_partition_the_sample_and_keep_its_weight(
    rows: list[tuple[str, float | None, float | None, float]], k: int, seed: int
) -> None:
    personas = [persona(i, g, t1, t2, w) for i, (g, t1, t2, w) in enumerate(rows)]
    clusters = choose(personas, TOPICS, k, seed)
    members = sorted(i for c in clusters for i in c.members)
    assert members == list(range(len(personas)))  # every sampled persona stands in exactly one cluster
    positions = positions_matrix(personas, TOPICS)
    for group in {p.group for p in personas}:
        mine = [c for c in clusters if c.persona.group == group]
        size = sum(p.group == group for p in personas)
        assert len(mine) <= k and (size > k or len(mine) == size)  # at most k; all kept in a small group
        drawn = math.fsum(p.weight for p in personas if p.group == group)
        assert math.fsum(c.persona.weight for c in mine) == pytest.approx(drawn, rel=1e-12)
        medoids = [c.index for c in mine]
        for c in mine:
            assert c.index in c.members and all(personas[i].group == group for i in c.members)
            assert replace(c.persona, weight=personas[c.index].weight) == personas[c.index]  # a real persona
            # each member sits with its nearest representative (ties: the earlier cluster)
            d = distances(positions[list(c.members)], positions[medoids])
            assert (d[:, medoids.index(c.index)] <= d.min(axis=1) + 1e-12).all()
    assert [c.index for c in clusters] == sorted(c.index for c in clusters)  # in sample order


def _config(tiny_config: Path, **population: object) -> Path:
    raw = yaml.safe_load(tiny_config.read_text())
    raw["population"].update(population)
    tiny_config.write_text(yaml.safe_dump(raw))
    return tiny_config


def test_config_validates_representatives(tiny_config: Path) -> None:
    for bad in ("0", "2.5", "true", "many"):
        with pytest.raises(ConfigError) as info:
            load_config(tiny_config, [f"population.representatives={bad}"])
        assert info.value.problems[0][0] == "population.representatives"
    assert load_config(tiny_config, ["population.representatives=7"]).population.representatives == 7
    assert load_config(tiny_config).population.representatives is None


def test_a_plan_judges_only_the_representatives(tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(_config(tiny_config, representatives=2))
    plan = pipeline.plan(config, tmp_path / "out")
    assert isinstance(plan.population, Represented)
    assert len(plan.population.personas) == 8 and set(plan.population.group_counts.values()) == {2}
    assert sum(plan.population.stands_for) == 60 and plan.population.sampled_counts
    assert plan.persona_digests == tuple(record_digest(p) for p in plan.population.personas)
    full = pipeline.plan(load_config(tiny_config, ["population.representatives=null"]), tmp_path / "full")
    assert len(full.population.personas) == 60 and plan.fingerprint != full.fingerprint


def test_growing_a_build_of_representatives_is_refused(tiny_config: Path, tmp_path: Path) -> None:
    config = _config(tiny_config, representatives=2)
    with pytest.raises(ConfigError) as info:
        pipeline.plan(load_config(config), tmp_path / "out", add_personas=5)
    assert info.value.problems[0][0] == "population.representatives"
    code, _, stderr = run_cli("build", str(config), "--out", str(tmp_path / "out"), "--add-personas", "5")
    assert code == 2 and "population.representatives" in stderr and "--add-personas" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "out").exists()


def _personas_table(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in sorted((out / "data" / "personas").glob("*.parquet"))])


def test_a_build_holds_the_representatives_with_their_weights(tiny_config: Path, tmp_path: Path) -> None:
    plan = pipeline.plan(load_config(_config(tiny_config, representatives=3)), tmp_path / "out")
    run_without_prefect(plan)
    table = _personas_table(tmp_path / "out")
    expected = {p.id: p.weight for p in plan.population.personas}
    assert dict(zip(table["persona_id"], table["weight"], strict=True)) == expected
    assert table.group_by("group").len()["len"].to_list() == [3] * 4
    assert table["weight"].sum() == pytest.approx(60)  # proportional allocation: personas weigh 1 each
    judged = pl.concat([pl.read_parquet(f) for f in (tmp_path / "out" / "data" / "judgments").glob("*.parquet")])
    assert set(judged["persona_id"]) == set(expected)


@pytest.mark.integration
def test_cli_build_with_representatives(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "build", str(_config(tiny_config, representatives=2)), "--out", str(out), "--no-progress"
    )
    assert code == 0, stdout + stderr
    table = _personas_table(out)
    assert sorted(table.group_by("group").len()["len"].to_list()) == [2] * 4
    assert table["weight"].sum() == pytest.approx(60)
    assert (table["weight"] > 1).all()  # each stands for several of the 60 sampled personas
    readme = (out / "README.md").read_text()
    assert "representatives: 2" in readme
