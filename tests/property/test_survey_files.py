"""Random labelled SPSS and Stata files as spec sources: a population is built with exactly the file's labels (the
spec's own codes winning, declared missing codes not answered, unlabelled codes read as numbers), or the spec is
refused with a ConfigError naming the spec and a field; never another exception, never a mislabelled persona.

The expected labels are worked out here from pyreadstat's own reading of the file, independently of polypref.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyreadstat
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polypref import files
from polypref.errors import ConfigError
from polypref.population import load_spec, sample_population
from polypref.population.draft import draft_spec
from polypref.population.spec import GROUP_SEPARATOR, NOT_ANSWERED
from polypref.population.survey import respondents
from tests.property.strategies import TRICKY

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZE = 20


def _no_surrogates(text: str) -> bool:
    return not any(0xD800 <= ord(c) < 0xE000 for c in text)  # a file's text is UTF-8: it cannot hold one


plain_labels = st.sampled_from(["low", "mid", "high", "strongly agree", "Ja, völlig", "1", "2.5"])
label_texts = st.one_of(
    plain_labels,
    plain_labels,
    st.sampled_from([t for t in TRICKY if _no_surrogates(t)] + [NOT_ANSWERED, "x" * 130]),
    st.text(max_size=10).filter(_no_surrogates),
)
scale_texts = st.one_of(st.sampled_from(["low", "mid", "high", "1", "2", "3", "a · b"]), label_texts)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("survey-files")


@st.composite
def survey_files(draw: st.DrawFn) -> dict[str, Any]:
    """Columns rid (id), g (an attribute), q (an attitude), w (weight), with random codes, labels and missing."""
    kind = draw(st.sampled_from(["sav", "dta"]))
    n = draw(st.integers(1, 25))
    code = st.integers(-2, 9) if kind == "dta" else st.one_of(st.integers(-2, 9), st.sampled_from([0.5, 2.5]))
    answers = st.one_of(code, st.none()) if kind == "sav" else st.one_of(code, st.sampled_from([None, "a", "b"]))
    q = draw(st.lists(answers, min_size=n, max_size=n))
    g = draw(st.lists(st.one_of(st.integers(0, 4), st.none()), min_size=n, max_size=n))
    q_labels = draw(st.dictionaries(code, label_texts, max_size=6))
    g_labels = draw(st.dictionaries(st.integers(0, 4), label_texts, max_size=4))
    missing: dict[str, list[Any]] = {}
    if kind == "sav":
        discrete = st.lists(code, max_size=3, unique=True)
        ranged = st.tuples(st.integers(-2, 9), st.integers(0, 4)).map(lambda t: [{"lo": t[0], "hi": t[0] + t[1]}])
        missing = {"q": draw(st.one_of(discrete, ranged)), "g": draw(st.lists(st.integers(0, 4), max_size=2))}
    else:
        q_labels |= draw(st.dictionaries(st.sampled_from(["a", "b"]), label_texts, max_size=2))  # .a, .b labelled
    weight = st.one_of(st.floats(0.1, 5), st.sampled_from([0.0, 1.0]))
    w = draw(
        st.lists(
            st.one_of(weight, st.sampled_from([-1.0, math.nan])) if draw(st.integers(0, 4)) == 0 else weight,
            min_size=n,
            max_size=n,
        )
    )
    return {"kind": kind, "q": q, "g": g, "q_labels": q_labels, "g_labels": g_labels, "missing": missing, "w": w}


def _write(path: Path, survey: dict[str, Any]) -> None:
    n = len(survey["q"])
    frame = pd.DataFrame({"rid": range(100, 100 + n), "g": survey["g"], "q": survey["q"], "w": survey["w"]})
    labels = {"g": survey["g_labels"], "q": survey["q_labels"]}
    if survey["kind"] == "sav":
        frame["q"] = frame["q"].astype(float)
        frame["g"] = frame["g"].astype(float)
        missing = {c: r for c, r in survey["missing"].items() if r}
        pyreadstat.write_sav(frame, str(path), variable_value_labels=labels, missing_ranges=missing or None)
    else:
        letters = sorted({v for v in survey["q"] if isinstance(v, str)})
        labels["q"] = {k: v for k, v in labels["q"].items() if not isinstance(k, str) or k in letters}
        if not letters:
            frame["q"] = frame["q"].astype(float)
        frame["g"] = frame["g"].astype(float)
        pyreadstat.write_dta(
            frame, str(path), variable_value_labels=labels, missing_user_values={"q": letters} if letters else None
        )


def _file(path: Path) -> tuple[pl.DataFrame, Any]:
    """The file as pyreadstat reads it: SPSS user-missing codes as they are, Stata's extended missing as null."""
    sav = path.suffix == ".sav"
    read = pyreadstat.read_sav if sav else pyreadstat.read_dta
    return read(str(path), user_missing=sav, output_format="polars")


def _missing(value: Any, ranges: list[dict[str, Any]]) -> bool:
    return any(r["lo"] <= value <= r["hi"] for r in ranges)


def _text(value: Any, values: list[Any]) -> str:
    """How SPSS and Stata show an unlabelled code: a whole number without ".0" when all the column's are."""
    whole = all(float(v).is_integer() for v in values)
    return str(int(value)) if whole else str(float(value))


def _expected(
    codes: list[Any], labels: dict[Any, str], ranges: list[dict[str, Any]], own: dict[int, str] | None
) -> tuple[list[str | None], bool]:
    """Each row's label, and whether the spec must be refused for it: a blank file label in use, or (where the
    file labels none of the column's codes) a value the spec's own labels leave out."""
    codes = [None if isinstance(c, float) and math.isnan(c) else c for c in codes]
    file_labels = {k: v for k, v in labels.items() if not isinstance(k, str)}  # .a-.z label no value
    refused = False
    if own is None:
        own = {}
    elif not file_labels:  # the spec labels the column alone: every answer needs a label
        refused = any(c not in own for c in codes if c is not None and not _missing(c, ranges))
    kept = [c if c is not None and not (_missing(c, ranges) and c not in own) else None for c in codes]
    present = [c for c in kept if c is not None]
    refused |= any(c not in own and c in file_labels and files.is_blank(file_labels[c]) for c in present)
    out: list[str | None] = []
    for c in kept:
        if c is None:
            out.append(None)
        elif c in own:
            out.append(own[c])
        elif c in file_labels:
            out.append(file_labels[c])
        else:
            out.append(_text(c, present))
    return out, refused


def _spec(draw: st.DrawFn, path: Path) -> dict[str, Any]:
    """A spec over the file: mostly one that should build (the scale holds the file's answers, in random order),
    sometimes one with a scale that misses some, spec codes over the file's, or a column the file lacks."""
    g_own = draw(
        st.one_of(
            st.none(), st.none(), st.none(), st.dictionaries(st.integers(0, 4), st.sampled_from("xyz"), max_size=3)
        )
    )
    q_own = draw(
        st.one_of(
            st.none(), st.none(), st.dictionaries(st.integers(-2, 9), st.sampled_from(["own 1", "own 2"]), max_size=3)
        )
    )
    frame, meta = _file(path)
    codes = (meta.variable_value_labels or {}).get("q", {})
    answers, _ = _expected(frame["q"].to_list(), codes, (meta.missing_ranges or {}).get("q", []), q_own)
    held = sorted({a for a in answers if a is not None} | set((q_own or {}).values()))
    held += ["unused", "unused too"][: max(0, 2 - len(held))]  # a scale has two answers at least
    valid = not any(files.is_blank(a) for a in held)
    exact = st.permutations(held) if valid else st.nothing()
    chosen = st.lists(scale_texts.filter(lambda t: not files.is_blank(t)), min_size=2, max_size=6, unique=True)
    scale = draw(st.one_of(exact, exact, exact, chosen).map(list))
    if q_own is not None and not set(q_own.values()) <= set(scale):
        q_own = {k: v for k, v in q_own.items() if v in scale}  # a spec's own codes must be on its scale
    attribute: dict[str, Any] = {"column": draw(st.sampled_from(["g"] * 9 + ["nope"]))}
    attribute["missing"] = draw(st.sampled_from(["drop", "mark"]))
    if g_own is not None:
        attribute["labels"] = g_own
    item: dict[str, Any] = {"column": "q", "topic": "a question"}
    if q_own is not None:
        item["codes"] = q_own
    return {
        "name": "random",
        "title": "A random labelled survey",
        "source": path.name,
        "id_column": "rid",
        "weight_column": draw(st.sampled_from(["w", "w", None])),
        "terms_class": "open",
        "citation": "Random test file.",
        "terms": "No terms: synthetic test data.",
        "portrayal": "portrayal.j2",
        "attributes": {"g": attribute},
        "groups": {"by": ["g"]},
        "attitudes": {"scale": scale, "missing": draw(st.sampled_from(["drop", "mark"])), "items": {"q": item}},
    }


def _predicted(path: Path, spec: dict[str, Any]) -> tuple[set[str], dict[str, tuple[str | None, str | None]]]:
    """The fields a correct loader must blame (empty: it must build), and each respondent's (attribute, view)."""
    frame, meta = _file(path)
    attribute, item = spec["attributes"]["g"], spec["attitudes"]["items"]["q"]
    if attribute["column"] != "g":
        return {"attributes.g.column"}, {}
    ranges = meta.missing_ranges or {}
    value_labels = meta.variable_value_labels or {}
    g, g_refused = _expected(
        frame["g"].to_list(), value_labels.get("g", {}), ranges.get("g", []), attribute.get("labels")
    )
    q, q_refused = _expected(frame["q"].to_list(), value_labels.get("q", {}), ranges.get("q", []), item.get("codes"))
    problems = set()
    if g_refused:
        problems.add("attributes.g.labels")
    if q_refused:
        problems.add("attitudes.items.q.codes")
    scale = spec["attitudes"]["scale"]
    if any(v is not None and v not in scale for v in q):
        problems.add("attitudes.items.q")
    weights = frame["w"].to_list() if spec["weight_column"] else [1.0] * frame.height
    if any(w is None or math.isnan(w) or w < 0 for w in weights):
        problems.add("weight_column")
    if problems:
        return problems, {}
    if all(v is None for v in q):  # nobody answered the item: every judgment on it would be "no attitude"
        return {"attitudes.items.q"}, {}
    rows = {str(i): (a, v, w) for i, a, v, w in zip(frame["rid"].cast(pl.Int64).to_list(), g, q, weights, strict=True)}
    kept = {
        rid: (a, v)
        for rid, (a, v, w) in rows.items()
        if not (attribute["missing"] == "drop" and a is None)
        and not (spec["attitudes"]["missing"] == "drop" and v is None)
        and not (spec["weight_column"] and w <= 0)
    }
    if not kept:
        return {"attributes.g.missing", "attitudes.missing", "weight_column", "source"}, {}
    if all(v is None for _, v in kept.values()):  # the missing-value rules left out everyone who answered
        return {"attitudes.items.q"}, {}
    labels = {a for a, _ in kept.values() if a is not None}
    if any(GROUP_SEPARATOR in a for a in labels) or (NOT_ANSWERED in labels and None in {a for a, _ in kept.values()}):
        return {"attributes.g"}, {}
    return set(), kept


@SETTINGS
@given(survey=survey_files(), data=st.data())
def test_labelled_files_build_with_exactly_their_labels_or_name_the_field(
    folder: Path, survey: dict[str, Any], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(dir=folder) as here:
        path = Path(here) / f"survey.{survey['kind']}"
        _write(path, survey)
        spec = _spec(data.draw, path)
        spec_path = Path(here) / "spec.yaml"
        # ASCII with escapes: PyYAML writes some line breaks (\x85) raw and reads them back as spaces
        spec_path.write_text(yaml.safe_dump(spec, allow_unicode=False), encoding="utf-8")
        problems, expected = _predicted(path, spec)
        try:
            loaded = load_spec(str(spec_path))
            frame = respondents(loaded).frame
            population = sample_population(loaded, SIZE, seed=1)
        except ConfigError as e:
            assert e.source == str(spec_path), e
            field = e.problems[0][0]
            assert field in problems, (problems, e)
            if field.endswith((".labels", ".codes")) or field == "attitudes.items.q":
                assert str(path) in e.problems[0][1]  # the file whose labels are at fault
            event(f"refused: {field}")
            return
        assert not problems, f"built, but expected a refusal naming {problems}"
        event(f"built ({survey['kind']})")
        got = {rid: (a, v) for rid, a, v in zip(frame["respondent_id"], frame["a:g"], frame["v:q"], strict=True)}
        assert got == expected
        assert len(population.personas) == SIZE
        for p in population.personas:
            assert (p.attributes["g"], p.attitudes["q"]) == expected[p.respondent_id]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(survey=survey_files())
def test_drafts_of_random_files_load_and_sample_as_written(folder: Path, survey: dict[str, Any]) -> None:
    """init-spec on any labelled file: a draft that loads and samples as it is written, or a ConfigError naming
    the survey file (a file with nothing to draft from)."""
    with tempfile.TemporaryDirectory(dir=folder) as here:
        path = Path(here) / f"survey.{survey['kind']}"
        _write(path, survey)
        try:
            made = draft_spec(path, path.with_suffix(".yaml"))
        except ConfigError as e:
            assert e.source == str(path)
            event("nothing to draft")
            return
        assert files.parse_yaml(made.text, "draft") == made.spec
        path.with_suffix(".yaml").write_text(made.text, encoding="utf-8")
        spec = load_spec(str(path.with_suffix(".yaml")))
        assert len(sample_population(spec, SIZE, seed=0).personas) == SIZE
        event("drafted")


def test_a_draft_leaves_out_an_item_nobody_answered(folder: Path) -> None:
    """Found by the property above: a file whose one respondent gave only a declared-missing code."""
    survey = {
        "kind": "sav",
        "q": [0],
        "g": [None],
        "q_labels": {1: "low", -1: "mid"},
        "g_labels": {},
        "missing": {"q": [{"lo": 0, "hi": 0}], "g": []},
        "w": [1.0],
    }
    with tempfile.TemporaryDirectory(dir=folder) as here:
        path = Path(here) / "survey.sav"
        _write(path, survey)
        with pytest.raises(ConfigError) as refused:  # nothing left to draft from, said of the survey file
            draft_spec(path, path.with_suffix(".yaml"))
        assert refused.value.source == str(path)
