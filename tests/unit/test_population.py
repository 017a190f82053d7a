from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml

from polypref.errors import ConfigError
from polypref.population import load_spec, sample_population
from polypref.population.sample import allocate
from polypref.population.survey import respondents
from tests.conftest import spec_dict, survey_table


def _weighted_share(table: pl.DataFrame, column: str, value: int) -> float:
    return float(table.filter(pl.col(column) == value)["w"].sum() / table["w"].sum())


def test_group_counts_follow_weighted_shares(tiny):
    spec = load_spec(str(tiny["spec"]))
    population = sample_population(spec, 1000, "proportional", seed=1)
    assert sum(population.group_counts.values()) == 1000
    counted = pl.Series([p.group for p in population.personas]).value_counts()
    assert dict(counted.iter_rows()) == {g: n for g, n in population.group_counts.items() if n}
    table = survey_table()
    south = _weighted_share(table, "region", 2)
    drawn_south = sum(n for g, n in population.group_counts.items() if g.startswith("south")) / 1000
    assert drawn_south == pytest.approx(south, abs=0.002)  # largest remainder: off by at most a unit per group


def test_weighted_attribute_and_attitude_frequencies_match_the_survey(tiny):
    """Within groups, draws are weight-proportional; on a large draw frequencies match weighted targets."""
    spec = load_spec(str(tiny["spec"]))
    n = 40_000
    personas = sample_population(spec, n, "proportional", seed=2).personas
    table = survey_table()
    weights = table["w"].to_numpy()
    target_south = _weighted_share(table, "region", 2)
    target_t1_low = float(weights[table["t1"].to_numpy() == 1].sum() / weights.sum())
    unweighted_t1_low = float((table["t1"] == 1).mean())
    south = np.mean([p.attributes["region"] == "south" for p in personas])
    t1_low = np.mean([p.attitudes["t1"] == "low" for p in personas])
    # tolerance: 4 binomial standard errors
    assert south == pytest.approx(target_south, abs=4 * np.sqrt(0.25 / n))
    assert t1_low == pytest.approx(target_t1_low, abs=4 * np.sqrt(0.25 / n))
    assert abs(target_t1_low - unweighted_t1_low) > 0.05  # so the test can tell weighting from not


def test_equal_and_explicit_allocations(tiny):
    spec = load_spec(str(tiny["spec"]))
    equal = sample_population(spec, 100, "equal", seed=0)
    assert sorted(equal.group_counts.values()) == [25, 25, 25, 25]
    # equal allocation over-samples the rare south; weights restore the population shares
    weighted_south = sum(p.weight for p in equal.personas if p.attributes["region"] == "south") / 100
    assert weighted_south == pytest.approx(_weighted_share(survey_table(), "region", 2), abs=1e-9)

    counts = {"north · male": 10, "south · female": 5}
    explicit = sample_population(spec, 15, counts, seed=0)
    assert {g: n for g, n in explicit.group_counts.items() if n} == counts
    shares = allocate({"a": 0.5, "b": 0.5}, 7, {"a": 0.7, "b": 0.3})
    assert shares == {"a": 5, "b": 2}


@pytest.mark.parametrize(
    ("allocation", "message"),
    [({"north · male": 0.5}, "sum to 0.5"), ({"nowhere": 1.0}, "population.allocation.nowhere")],
)
def test_bad_allocation_is_a_config_error(tiny, allocation, message):
    spec = load_spec(str(tiny["spec"]))
    with pytest.raises(ConfigError, match=message):
        sample_population(spec, 10, allocation, seed=0)


def test_missing_answers_are_marked_or_dropped_never_invented(tiny):
    spec = load_spec(str(tiny["spec"]))
    skipped = int(survey_table()["t2"].is_nan().sum())  # pandas-style NaN codes a skipped answer
    marked = respondents(spec)
    assert marked.frame.height == 3000
    assert marked.frame["v:t2"].null_count() == skipped > 0
    population = sample_population(spec, 2000, "proportional", seed=0)
    assert any(p.attitudes["t2"] is None and p.positions["t2"] is None for p in population.personas)

    dropping = spec.model_copy(update={"attitudes": spec.attitudes.model_copy(update={"missing": "drop"})})
    dropped = respondents(dropping)
    assert dropped.frame.height == 3000 - skipped
    assert dropped.dropped == {"missing attitude t2": skipped}


def test_persona_ids_are_stable_content_hashes(tiny):
    spec = load_spec(str(tiny["spec"]))
    small = sample_population(spec, 50, "proportional", seed=5).personas
    again = sample_population(spec, 50, "proportional", seed=5).personas
    assert [p.id for p in small] == [p.id for p in again]
    assert len({p.id for p in sample_population(spec, 5000, "proportional", seed=5).personas}) == 5000
    first_draws = {p.respondent_id: p.id for p in small if p.replicate == 0}
    other_seed = sample_population(spec, 5000, "proportional", seed=9).personas
    shared = [p for p in other_seed if p.replicate == 0 and p.respondent_id in first_draws]
    assert shared and all(first_draws[p.respondent_id] == p.id for p in shared)


def test_portrayal_is_rendered_from_the_template(tiny):
    persona = sample_population(load_spec(str(tiny["spec"])), 5, "proportional", seed=0).personas[0]
    assert f"- region: {persona.attributes['region']}" in persona.portrayal
    assert "public parks" in persona.portrayal


def test_gss_default_population():
    spec = load_spec("gss_spending")
    population = sample_population(spec, 500, "proportional", seed=0)
    assert len(population.group_shares) == 24
    assert population.respondents_total == 2348
    assert population.respondents_used == 2348 - sum(population.dropped.values())
    persona = population.personas[0]
    assert set(persona.attitudes) == set(spec.attitudes.items) and None not in persona.attitudes.values()
    assert persona.portrayal.startswith(f"You are a {persona.attributes['age']}-year-old")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "attributes": {
                    **spec_dict()["attributes"],
                    "region": {"column": "region", "labels": {1: "north"}},
                }
            },
            "attributes.region.labels",
        ),
        ({"groups": {"by": ["planet"]}}, "groups.by"),
        ({"weight_column": "weight"}, "weight_column"),
        ({"source": "missing.parquet"}, "source"),
        ({"terms_class": "whatever"}, "terms_class"),
    ],
)
def test_bad_specs_name_the_field(tiny, change, field):
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(**change)))
    with pytest.raises(ConfigError) as info:
        respondents(load_spec(str(tiny["spec"])))
    assert info.value.source == str(tiny["spec"])
    assert any(f.startswith(field) for f, _ in info.value.problems), info.value.problems


def test_negative_weights_are_rejected(tiny):
    table = survey_table().with_columns(w=pl.when(pl.col("rid") == 1000).then(-1.0).otherwise(pl.col("w")))
    table.write_parquet(tiny["dir"] / "survey.parquet")
    with pytest.raises(ConfigError, match="negative weight"):
        respondents(load_spec(str(tiny["spec"])))
