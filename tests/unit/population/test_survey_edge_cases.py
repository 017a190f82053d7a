"""Survey specs at their edges (issue 24, item 9): a survey table without rows, an ``items.topics`` filter over
items on topics the spec lacks, an attitude item nobody answered. Each is refused before any work, with a
ConfigError naming the spec, the field and the reason (exit 2 from the CLI, no traceback), or it builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from polypref.config import ItemsConfig
from polypref.errors import ConfigError
from polypref.items.sources import PARQUET_COLUMNS, read_items
from polypref.population import load_spec, sample_population
from polypref.population.survey import respondents
from tests.conftest import items_records, run_cli, spec_dict, survey_table
from tests.unit.population.test_survey_files import DONT_KNOW, REFUSED, _frame, spec_over, write_sav


def _write(tmp_path: Path, spec: dict[str, Any], table: pl.DataFrame | None = None) -> Path:
    """The spec (and its survey table, as parquet or CSV by the source's suffix) in tmp_path; the spec's path."""
    if table is not None:
        source = tmp_path / spec["source"]
        table.write_csv(source) if source.suffix == ".csv" else table.write_parquet(source)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _items(tmp_path: Path) -> Path:
    """Items on t1 and t2, with stances on each topic's scale."""
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in items_records()))
    return path


def _refusal(spec: Path) -> tuple[str, str]:
    with pytest.raises(ConfigError) as e:
        respondents(load_spec(str(spec)))
    assert e.value.source == str(spec)
    return e.value.problems[0]


def _validate(spec: Path, *overrides: str) -> tuple[int, str, str]:
    return run_cli(
        "validate", "--set", f"population.spec={spec}", "--set", f"items.source={_items(spec.parent)}", *overrides
    )


def _refused_by_cli(spec: Path, *words: str) -> None:
    code, _, stderr = _validate(spec)
    assert code == 2, stderr
    assert stderr.startswith(f"error: {spec}: invalid"), stderr
    assert all(w in stderr for w in words), stderr
    assert "Traceback" not in stderr


# a. a survey table without rows


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_without_rows_is_refused_for_that(tmp_path: Path, suffix: str) -> None:
    """A header-only CSV reads as text columns: it was refused for its weight's type, not for being empty."""
    table = survey_table(n=10).head(0)
    spec = _write(tmp_path, spec_dict(source=f"survey{suffix}"), table)
    if suffix == ".csv":
        assert (tmp_path / "survey.csv").read_text() == "rid,region,sex,age,t1,t2,w\n"
    field, reason = _refusal(spec)
    assert field == "source"
    assert f"survey table {tmp_path / f'survey{suffix}'} has no rows" in reason
    _refused_by_cli(spec, "source: survey table", "has no rows")


# b. items.topics leaves out topics the spec need not have


def _spec_on_t1(tmp_path: Path) -> Path:
    spec = spec_dict()
    del spec["attitudes"]["items"]["t2"]
    return _write(tmp_path, spec, survey_table(n=200))


def _flat_parquet(tmp_path: Path) -> Path:
    """The items in the flat Parquet layout: one response per row."""
    rows = [
        {
            "item_id": r["id"],
            "topic": r["topic"],
            "prompt": r["prompt"],
            "response_id": s["id"],
            "response": s["text"],
            "stance": s["stance"],
        }
        for r in items_records()
        for s in r["responses"]
    ]
    path = tmp_path / "items.parquet"
    pl.DataFrame(rows).select(PARQUET_COLUMNS).write_parquet(path)
    return path


@pytest.mark.parametrize("layout", ["jsonl", "flat parquet"])
def test_a_topic_the_filter_leaves_out_need_not_be_in_the_spec(tmp_path: Path, layout: str) -> None:
    spec = load_spec(str(_spec_on_t1(tmp_path)))
    source = _items(tmp_path) if layout == "jsonl" else _flat_parquet(tmp_path)
    loaded = read_items(ItemsConfig(source=str(source), topics=["t1"]), spec)
    assert [(i.id, i.topic) for i in loaded.items] == [("q-t1", "t1")]
    # a topic the filter keeps is still checked against the spec
    with pytest.raises(ConfigError, match="'t2' is not a topic of population spec tiny"):
        read_items(ItemsConfig(source=str(source), topics=["t2"]), spec)


def test_validate_with_a_topics_filter_over_topics_the_spec_lacks(tmp_path: Path) -> None:
    spec = _spec_on_t1(tmp_path)
    code, stdout, stderr = _validate(spec, "--set", "items.topics=[t1]")
    assert code == 0, stderr
    assert json.loads(stdout)["prompts"] == 1
    code, _, stderr = _validate(spec, "--set", "items.topics=[t1, t3]")  # a topic without items: still refused
    assert code == 2 and "items.topics: no items on topics ['t3']" in stderr, stderr


# c. an attitude item nobody answered


@pytest.mark.parametrize("missing", ["mark", "drop"])
def test_an_item_nobody_answered_is_refused(tmp_path: Path, missing: str) -> None:
    """Marked, every persona would hold a null view on it and every judgment on its topic would be invalid."""
    table = survey_table(n=200).with_columns(t2=pl.lit(None, dtype=pl.Float64))
    spec = spec_dict()
    spec["attitudes"]["missing"] = missing
    path = _write(tmp_path, spec, table)
    field, reason = _refusal(path)
    assert field == "attitudes.items.t2"
    assert (
        reason == f"no respondent answered it: column 't2' of {tmp_path / 'survey.parquet'} holds only missing answers"
    )
    _refused_by_cli(path, "attitudes.items.t2: no respondent answered it")


def test_an_item_whose_every_answer_is_a_declared_missing_code_is_refused(tmp_path: Path) -> None:
    frame = _frame(n=50)
    frame["natpark"] = np.where(np.arange(50) % 2, DONT_KNOW, REFUSED)
    write_sav(tmp_path / "survey.sav", frame)
    spec = _write(tmp_path, spec_over("survey.sav"))
    assert _refusal(spec) == (
        "attitudes.items.natpark",
        f"no respondent answered it: column 'natpark' of {tmp_path / 'survey.sav'} holds only missing answers",
    )


def test_an_item_answered_only_by_respondents_the_rules_drop_is_refused(tmp_path: Path) -> None:
    table = survey_table(n=200)
    answered = pl.int_range(pl.len()) < 20
    table = table.with_columns(
        t2=pl.when(answered).then(pl.col("t2").fill_nan(1.0)), sex=pl.when(~answered).then(pl.col("sex"))
    )
    spec = spec_dict()
    spec["attributes"]["sex"]["missing"] = "drop"
    field, reason = _refusal(_write(tmp_path, spec, table))
    assert field == "attitudes.items.t2"
    assert reason == (
        f"no respondent left after the missing-value rules answered it (column 't2' of {tmp_path / 'survey.parquet'}; "
        "dropped: {'missing attribute sex': 20})"
    )


def test_an_item_some_respondents_answered_builds(tmp_path: Path) -> None:
    table = survey_table(n=200).with_columns(t2=pl.when(pl.int_range(pl.len()) == 7).then(2.0))
    spec = load_spec(str(_write(tmp_path, spec_dict(), table)))
    views = respondents(spec).frame["v:t2"]
    assert views.drop_nulls().to_list() == ["mid"]
    assert len(sample_population(spec, 30, seed=1).personas) == 30
