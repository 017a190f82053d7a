"""A population grows by appending: the first N personas of a population of N + M are those of N, whatever
the seed, the sizes and the allocation. A scheduled refresh depends on it (new personas become new shards and
the shards already built stay as they are)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from polypref.population import load_spec, sample_population
from polypref.population.sample import apportion
from polypref.population.spec import SurveySpec
from tests.conftest import spec_dict, survey_table

GROUPS = ["north · male", "north · female", "south · male", "south · female"]


@pytest.fixture(scope="module")
def spec() -> Iterator[SurveySpec]:
    with tempfile.TemporaryDirectory() as folder:
        survey_table().write_parquet(Path(folder) / "survey.parquet")
        path = Path(folder) / "tiny.yaml"
        path.write_text(yaml.safe_dump(spec_dict()))
        yield load_spec(str(path))


allocations = st.one_of(
    st.sampled_from(["proportional", "equal"]),
    st.lists(st.integers(1, 9), min_size=4, max_size=4).map(
        lambda w: {g: x / sum(w) for g, x in zip(GROUPS, w, strict=True)}
    ),
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 120), m=st.integers(0, 120), seed=st.integers(0, 2**32 - 1), allocation=allocations)
def test_the_first_personas_of_a_larger_population_are_the_smaller_one(
    spec: SurveySpec, n: int, m: int, seed: int, allocation: object
) -> None:
    small = sample_population(spec, n, allocation, seed)  # type: ignore[arg-type]
    large = sample_population(spec, n + m, allocation, seed)  # type: ignore[arg-type]
    assert large.personas[:n] == small.personas
    assert len({p.id for p in large.personas}) == len(large.personas)  # no persona twice, grown or not


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=12),
    n=st.integers(0, 300),
    m=st.integers(0, 300),
)
def test_apportionment_is_house_monotone_and_near_the_target(weights: list[float], n: int, m: int) -> None:
    targets = {f"g{i}": w / sum(weights) for i, w in enumerate(weights)}
    order = apportion(targets, n + m)
    assert order[:n] == apportion(targets, n)  # growing never takes a seat from a group
    for group, share in targets.items():
        assert abs(order.count(group) - share * (n + m)) <= max(1.0, 0.5 * len(targets))
