"""SPSS (.sav) and Stata (.dta) survey files as spec sources, and `polypref init-spec` drafting specs from them.

Every file is written here with pyreadstat: value labels, declared missing codes and a weight, as GSS, ANES or ESS
files ship them. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyreadstat
import pytest
import yaml

from polypref import files
from polypref.errors import ConfigError
from polypref.population import load_spec, sample_population
from polypref.population.draft import draft_spec
from polypref.population.survey import load_table, respondents, source_file
from tests.conftest import CliResult, run_cli

N = 2000
REGION = {1: "north", 2: "south"}
SEX = {1: "male", 2: "female"}
SPEND = {1: "too little", 2: "about right", 3: "too much"}  # the answer codes
DONT_KNOW, REFUSED = 8, 9  # declared missing in the file


def _frame(n: int = N, seed: int = 3) -> pd.DataFrame:
    """Respondents: the south rarer but weighing three times as much, and leaning "too little" on parks."""
    rng = np.random.default_rng(seed)
    region = rng.choice([1, 2], size=n, p=[0.75, 0.25])
    south = region == 2
    parks = np.where(
        south, rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1]), rng.choice([1, 2, 3], size=n, p=[0.1, 0.3, 0.6])
    )
    skipped = rng.random(n)
    parks = np.where(skipped < 0.05, DONT_KNOW, np.where(skipped < 0.08, REFUSED, parks))
    return pd.DataFrame(
        {
            "caseid": np.arange(n) + 5000,
            "region": region,
            "sex": rng.choice([1, 2], size=n),
            "age": rng.integers(18, 90, size=n),
            "natpark": parks,
            "imbgeco": rng.integers(0, 11, size=n),  # 0-10, only the ends labelled (as in the ESS)
            "unused": rng.random(n),
            "wtssall": np.where(south, 3.0, 1.0),
        }
    )


COLUMN_LABELS = {
    "caseid": "Respondent id number",
    "region": "Region of interview",
    "sex": "Respondent's sex",
    "age": "Age of respondent",
    "natpark": "Parks and recreation",
    "imbgeco": "Immigration bad or good for the economy",
    "unused": "A variable no spec reads",
    "wtssall": "Weight variable",
}
VALUE_LABELS: dict[str, dict[Any, str]] = {
    "region": REGION,
    "sex": SEX,
    "natpark": {**SPEND, DONT_KNOW: "don't know", REFUSED: "refused"},
    "imbgeco": {0: "Bad for the economy", 10: "Good for the economy"},
}


def write_sav(path: Path, frame: pd.DataFrame | None = None, **labels: dict[Any, str]) -> pd.DataFrame:
    frame = _frame() if frame is None else frame
    pyreadstat.write_sav(
        frame,
        str(path),
        file_label="Test survey",
        column_labels=COLUMN_LABELS,
        variable_value_labels={**VALUE_LABELS, **labels},
        missing_ranges={"natpark": [DONT_KNOW, REFUSED]},
        variable_measure={"natpark": "ordinal", "imbgeco": "ordinal"},
    )
    return frame


def write_dta(path: Path, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stata has no user-missing codes: don't know and refused become the extended missing values .d and .r."""
    frame = _frame() if frame is None else frame
    stata = frame.copy()
    stata["natpark"] = stata["natpark"].astype(object).replace({DONT_KNOW: "d", REFUSED: "r"})
    labels = {**VALUE_LABELS, "natpark": {**SPEND, "d": "don't know", "r": "refused"}}
    pyreadstat.write_dta(
        stata,
        str(path),
        file_label="Test survey",
        column_labels=COLUMN_LABELS,
        variable_value_labels=labels,
        missing_user_values={"natpark": ["d", "r"]},
    )
    return frame


def spec_over(source: str, **changes: Any) -> dict[str, Any]:
    """A spec that gives no labels: every answer comes from the file's value labels."""
    spec = {
        "name": "labelled",
        "title": "A labelled test survey",
        "source": source,
        "id_column": "caseid",
        "weight_column": "wtssall",
        "terms_class": "open",
        "citation": "Test survey, written in code.",
        "terms": "No terms: synthetic test data.",
        "portrayal": "portrayal.j2",
        "attributes": {"region": {"column": "region"}, "sex": {"column": "sex"}},
        "groups": {"by": ["region", "sex"]},
        "attitudes": {
            "scale": list(SPEND.values()),
            "missing": "mark",
            "items": {"natpark": {"column": "natpark", "topic": "parks and recreation"}},
        },
    }
    spec.update(changes)
    return spec


@pytest.fixture(params=["sav", "dta"])
def survey(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A labelled survey file of either kind and a spec over it."""
    path = tmp_path / f"survey.{request.param}"
    frame = (write_sav if request.param == "sav" else write_dta)(path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_over(path.name)))
    return {"path": path, "frame": frame, "spec": spec, "dir": tmp_path, "kind": request.param}


def _write_spec(survey: dict[str, Any], **changes: Any) -> str:
    survey["spec"].write_text(yaml.safe_dump(spec_over(survey["path"].name, **changes)))
    return str(survey["spec"])


def _expected_parks(frame: pd.DataFrame) -> dict[str, str | None]:
    return {str(i): SPEND.get(int(c)) for i, c in zip(frame["caseid"], frame["natpark"], strict=True)}


def test_personas_answer_with_the_files_value_labels(survey: dict[str, Any]) -> None:
    spec = load_spec(str(survey["spec"]))
    frame = respondents(spec).frame
    assert frame.height == N  # missing: mark keeps everyone
    expected = _expected_parks(survey["frame"])
    assert dict(zip(frame["respondent_id"], frame["v:natpark"], strict=True)) == expected
    population = sample_population(spec, 300, seed=1)
    rows = {str(r.caseid): r for r in survey["frame"].itertuples()}
    for p in population.personas:
        row = rows[p.respondent_id]  # ids read as the file's whole numbers, "5000", not "5000.0"
        assert p.attributes == {"region": REGION[row.region], "sex": SEX[row.sex]}
        assert p.attitudes["natpark"] == expected[p.respondent_id]
    assert {p.attitudes["natpark"] for p in population.personas} == {*SPEND.values(), None}


def test_survey_weights_are_honoured(survey: dict[str, Any]) -> None:
    personas = sample_population(load_spec(str(survey["spec"])), 8000, seed=2).personas
    frame = survey["frame"]
    weighted = float(frame.loc[frame.region == 2, "wtssall"].sum() / frame["wtssall"].sum())
    unweighted = float((frame.region == 2).mean())
    south = np.mean([p.attributes["region"] == "south" for p in personas])
    assert south == pytest.approx(weighted, abs=0.01)  # largest remainder: off by at most a unit per group
    assert abs(weighted - unweighted) > 0.15  # so the test can tell weighting from not


def test_declared_missing_codes_are_not_answered(survey: dict[str, Any]) -> None:
    skipped = int(survey["frame"]["natpark"].isin([DONT_KNOW, REFUSED]).sum())
    marked = respondents(load_spec(str(survey["spec"])))
    assert marked.frame["v:natpark"].null_count() == skipped > 0
    assert marked.frame.filter(pl.col("v:natpark").is_null())["p:natpark"].null_count() == skipped
    attitudes = {**spec_over("x")["attitudes"], "missing": "drop"}
    dropped = respondents(load_spec(_write_spec(survey, attitudes=attitudes)))
    assert dropped.frame.height == N - skipped
    assert dropped.dropped == {"missing attitude natpark": skipped}


def test_a_missing_code_the_spec_maps_is_an_answer(tmp_path: Path) -> None:
    """SPSS user-missing codes are only a default: a spec that labels don't know keeps it as an answer."""
    frame = write_sav(tmp_path / "survey.sav")
    attitudes = {
        "scale": [*SPEND.values(), "not sure"],
        "codes": {DONT_KNOW: "not sure"},  # the spec's label wins over the file's "don't know"
        "missing": "mark",
        "items": {"natpark": {"column": "natpark", "topic": "parks"}},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_over("survey.sav", attitudes=attitudes)))
    answers = respondents(load_spec(str(tmp_path / "spec.yaml"))).frame["v:natpark"]
    assert (answers == "not sure").sum() == (frame["natpark"] == DONT_KNOW).sum() > 0
    assert answers.null_count() == (frame["natpark"] == REFUSED).sum() > 0
    assert set(answers.drop_nulls()) == {*SPEND.values(), "not sure"}


def test_spec_labels_win_and_unlabelled_codes_read_as_numbers(survey: dict[str, Any]) -> None:
    attributes = {"region": {"column": "region", "labels": {2: "the south"}}, "sex": {"column": "sex"}}
    scale = ["Bad for the economy", *map(str, range(1, 10)), "Good for the economy"]
    attitudes = {
        "scale": scale,
        "missing": "mark",
        "items": {"imbgeco": {"column": "imbgeco", "topic": "immigration and the economy"}},
    }
    frame = respondents(load_spec(_write_spec(survey, attributes=attributes, attitudes=attitudes))).frame
    assert set(frame["a:region"]) == {"north", "the south"}  # the file's label for 1, the spec's for 2
    codes = survey["frame"]["imbgeco"].to_list()
    assert frame["v:imbgeco"].to_list() == [scale[c] for c in codes]
    assert frame["p:imbgeco"].to_list() == [c / 10 for c in codes]


def test_only_the_columns_the_spec_uses_are_read(survey: dict[str, Any]) -> None:
    spec = load_spec(str(survey["spec"]))
    assert sorted(load_table(spec).columns) == ["caseid", "natpark", "region", "sex", "wtssall"]
    assert source_file(spec) == survey["path"]  # what the build fingerprint hashes


def test_missing_codes_are_not_binned_and_text_codes_are_labelled(tmp_path: Path) -> None:
    """GSS codes age "don't know" as 98: declared missing, it must not land in the oldest age group. SPSS text
    variables carry value labels and missing codes too."""
    frame = _frame(n=300)
    frame["age"] = [98 if i % 10 == 0 else a for i, a in enumerate(frame["age"])]
    frame["party"] = ["D", "R", "I", "?"] * 75
    pyreadstat.write_sav(
        frame,
        str(tmp_path / "survey.zsav"),  # compressed SPSS
        compress=True,
        variable_value_labels={**VALUE_LABELS, "party": {"D": "Democrat", "R": "Republican", "?": "unsure"}},
        missing_ranges={"natpark": [DONT_KNOW, REFUSED], "age": [{"lo": 98, "hi": 99}], "party": ["?"]},
    )
    attributes = {
        "age_group": {"column": "age", "bins": [{"upto": 44, "label": "young"}, {"upto": 120, "label": "old"}]},
        "party": {"column": "party", "missing": "mark"},
        "sex": {"column": "sex"},
    }
    spec = spec_over("survey.zsav", attributes=attributes, groups={"by": ["sex"]})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = respondents(load_spec(str(tmp_path / "spec.yaml")))
    assert result.dropped == {"missing attribute age_group": 30}  # missing: drop, the default
    assert set(result.frame["a:age_group"]) == {"young", "old"}
    parties = result.frame["a:party"].to_list()
    assert set(parties) == {"Democrat", "Republican", "I", None}  # "I" has no label: it reads as itself
    unsure = sum(1 for i, party in enumerate(frame["party"]) if party == "?" and frame["age"][i] != 98)
    assert parties.count(None) == unsure > 0  # declared missing, kept (missing: mark) as not answered


def _error(survey: dict[str, Any], **changes: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        sample_population(load_spec(_write_spec(survey, **changes)), 20, seed=0)
    assert info.value.source == str(survey["spec"])
    return info.value


def test_a_variable_the_file_lacks_names_the_field_and_the_file(survey: dict[str, Any]) -> None:
    error = _error(survey, attributes={"region": {"column": "regoin"}, "sex": {"column": "sex"}})
    [(field, reason)] = error.problems
    assert field == "attributes.region.column"
    assert str(survey["path"]) in reason and "did you mean 'region'" in reason


def test_value_labels_off_the_scale_name_the_item_and_the_file(survey: dict[str, Any]) -> None:
    attitudes = {**spec_over("x")["attitudes"], "scale": ["low", "mid", "high"]}
    [(field, reason)] = _error(survey, attitudes=attitudes).problems
    assert field == "attitudes.items.natpark"
    assert "about right" in reason and str(survey["path"]) in reason


def test_blank_value_labels_are_refused(tmp_path: Path) -> None:
    write_sav(tmp_path / "survey.sav", sex={1: "male", 2: "   "})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_over("survey.sav")))
    with pytest.raises(ConfigError) as info:
        respondents(load_spec(str(tmp_path / "spec.yaml")))
    [(field, reason)] = info.value.problems
    assert field == "attributes.sex.labels" and "blank value labels" in reason and "survey.sav" in reason


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_file_names_the_source_and_the_file(survey: dict[str, Any], damage: str) -> None:
    data = survey["path"].read_bytes()
    damaged = {"garbage": b"not a survey file" * 20, "truncated": data[:200], "empty": b""}[damage]
    survey["path"].write_bytes(damaged)
    [(field, reason)] = _error(survey).problems
    assert field == "source" and f"cannot read survey file {survey['path']}" in reason


def test_a_file_with_the_wrong_suffix_is_refused(tmp_path: Path) -> None:
    write_sav(tmp_path / "survey.por")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_over("survey.por")))
    with pytest.raises(ConfigError) as info:
        respondents(load_spec(str(tmp_path / "spec.yaml")))
    assert info.value.problems[0][0] == "source" and ".sav" in info.value.problems[0][1]


# ---- init-spec ----


def _draft(path: Path) -> dict[str, Any]:
    made = draft_spec(path, path.with_suffix(".yaml"))
    assert files.parse_yaml(made.text, "draft") == made.spec  # the comments hide nothing, the YAML says it all
    path.with_suffix(".yaml").write_text(made.text, encoding="utf-8")
    return made.spec


@pytest.mark.parametrize("kind", ["sav", "dta"])
def test_the_draft_loads_and_samples_as_written(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"survey.{kind}"
    frame = (write_sav if kind == "sav" else write_dta)(path)
    draft = _draft(path)
    assert draft["source"] == path.name and draft["portrayal"] == "portrayal.j2"
    assert draft["id_column"] == "caseid" and draft["weight_column"] == "wtssall"
    assert set(draft["attributes"]) == {"region", "sex", "age", "age_group"}
    assert draft["attributes"]["sex"]["labels"] == SEX  # value labels written out
    assert set(draft["groups"]["by"]) >= {"sex", "age_group"}
    items = draft["attitudes"]["items"]
    assert set(items) == {"natpark", "imbgeco"}
    assert items["natpark"]["topic"] == "Parks and recreation"
    assert draft["attitudes"]["scale"] in (list(SPEND.values()), items["natpark"].get("scale"))

    spec = load_spec(str(path.with_suffix(".yaml")))
    population = sample_population(spec, 200, seed=0)
    expected = _expected_parks(frame)
    assert all(p.attitudes["natpark"] == expected[p.respondent_id] for p in population.personas)
    text = path.with_suffix(".yaml").read_text()
    for name, label in COLUMN_LABELS.items():
        assert f"#   {name}: {label}" in text  # every variable listed with its label


def test_the_draft_keeps_nasty_labels_exact_and_comments_on_one_line(tmp_path: Path) -> None:
    nasty = {1: "a\u2028b # not a comment", 2: "x\x85y: z", 3: "{\"id\": 'x'}"}
    frame = _frame(n=300)
    path = tmp_path / "survey.sav"
    pyreadstat.write_sav(
        frame,
        str(path),
        column_labels={**COLUMN_LABELS, "natpark": "line one\nline two \u2028 # three"},
        variable_value_labels={**VALUE_LABELS, "natpark": {**nasty, DONT_KNOW: "dk", REFUSED: "ref"}},
        missing_ranges={"natpark": [DONT_KNOW, REFUSED]},
    )
    draft = _draft(path)
    attitudes = draft["attitudes"]
    assert attitudes["items"]["natpark"].get("codes", attitudes.get("codes")) == nasty
    personas = sample_population(load_spec(str(tmp_path / "survey.yaml")), 100, seed=0).personas
    assert {p.attitudes["natpark"] for p in personas} <= {*nasty.values(), None}
    text = (tmp_path / "survey.yaml").read_text()
    assert "# natpark: line one line two # three\n" in text


def test_a_csv_draft_loads_as_written(tmp_path: Path) -> None:
    frame = pl.from_pandas(_frame(n=300)).with_columns(sex=pl.col("sex").replace_strict(SEX, return_dtype=pl.String))
    frame.write_csv(tmp_path / "survey.csv")
    draft = _draft(tmp_path / "survey.csv")
    assert draft["weight_column"] == "wtssall" and draft["id_column"] == "caseid"
    assert "sex" in draft["attributes"] and "natpark" in draft["attitudes"]["items"]
    assert len(sample_population(load_spec(str(tmp_path / "survey.yaml")), 50, seed=0).personas) == 50


def test_the_draft_guesses_only_usable_weights_and_ids(tmp_path: Path) -> None:
    frame = _frame(n=200)
    frame["weight"] = np.where(frame["region"] == 2, -1.0, 1.0)  # negative: not a weight the loader takes
    frame["caseid"] = frame["caseid"] % 50  # repeated: not an id
    pyreadstat.write_sav(
        frame.drop(columns=["wtssall"]), str(tmp_path / "survey.sav"), variable_value_labels=VALUE_LABELS
    )
    draft = _draft(tmp_path / "survey.sav")
    assert draft["weight_column"] is None and draft["id_column"] is None
    text = (tmp_path / "survey.yaml").read_text()
    assert "weight_column: null  # no survey weight found (candidates ['weight']" in text
    assert len(sample_population(load_spec(str(tmp_path / "survey.yaml")), 30, seed=0).personas) == 30


def polypref(*args: str, cwd: Path) -> CliResult:
    return run_cli(*args, cwd=cwd)


def test_init_spec_then_validate_and_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user goes: draft a spec from their file, write items on its topics, check, build."""
    from polypref import pipeline
    from polypref.config import load_config
    from tests.conftest import load_with_datasets, run_without_prefect

    write_sav(tmp_path / "gss.sav", _frame(n=400))
    made = polypref("init-spec", "gss.sav", "--out", "specs/gss.yaml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "wrote specs/gss.yaml" in made.stdout and "it loads and samples (400 respondents" in made.stdout
    spec = yaml.safe_load((tmp_path / "specs" / "gss.yaml").read_text())
    assert spec["source"] == "../gss.sav"
    again = polypref("init-spec", "gss.sav", "--out", "specs/gss.yaml", cwd=tmp_path)
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr and "Traceback" not in again.stderr
    assert polypref("init-spec", "gss.sav", "--out", "specs/gss.yaml", "--overwrite", cwd=tmp_path).returncode == 0

    scale = spec["attitudes"]["scale"]
    items = [
        {
            "id": f"q-{topic}",
            "topic": topic,
            "prompt": f"What should we do about {item['topic']}?",
            "responses": [
                {"id": f"{topic}-{i}", "text": f"We should say: {stance}.", "stance": stance}
                for i, stance in enumerate(item.get("scale", scale))
            ],
        }
        for topic, item in spec["attitudes"]["items"].items()
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    config = {
        "seed": 1,
        "population": {"spec": "specs/gss.yaml", "size": 12, "accept_terms": True},  # drafts are opt-in
        "items": {"source": "items.jsonl"},
        "output": {"units_per_shard": 400},
    }
    (tmp_path / "build.yaml").write_text(yaml.safe_dump(config))
    checked = polypref("validate", "build.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["personas"] == 12

    refused = polypref("validate", "build.yaml", "--set", "population.accept_terms=false", cwd=tmp_path)
    assert refused.returncode == 2 and "population.accept_terms" in refused.stderr

    monkeypatch.chdir(tmp_path)  # the config's paths are relative, as the CLI read them
    out = tmp_path / "out"
    plan = pipeline.plan(load_config(tmp_path / "build.yaml"), out)
    summary = run_without_prefect(plan)
    assert summary["personas"] == 12
    personas = load_with_datasets(out, "personas")
    assert set(personas["respondent_id"]) <= {str(i) for i in _frame(n=400)["caseid"]}


def test_init_spec_refuses_what_it_cannot_draft(tmp_path: Path) -> None:
    (tmp_path / "broken.sav").write_bytes(b"not spss at all" * 10)
    (tmp_path / "notes.txt").write_text("hello")
    for args, message in (
        (["broken.sav"], "broken.sav: invalid"),
        (["nowhere.dta"], "survey file not found"),
        (["notes.txt"], "expected a survey file ending in"),
        (["broken.sav", "--out", "spec.json"], "a .yaml or .yml file"),
    ):
        result = polypref("init-spec", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.sav", "notes.txt"]  # nothing written
