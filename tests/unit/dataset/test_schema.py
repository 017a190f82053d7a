from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
import pytest

from polypref.assets import json_schema as load
from polypref.dataset.row_models import generated
from polypref.dataset.schema import arrow_schema, to_arrow
from polypref.errors import SchemaViolation


@pytest.mark.process
def test_schema_files_match_the_models():
    for name, schema in generated().items():
        assert load(name.removesuffix(".json")) == schema, f"schemas/{name} drifted: run --update"
    result = subprocess.run([sys.executable, "-m", "polypref.dataset.schema", "--check"], capture_output=True)
    assert result.returncode == 0, result.stderr


def test_verdict_schema_is_what_llms_are_asked_for():
    verdict = load("verdict")
    assert verdict["required"] == ["rationale", "choice", "strength", "confidence"]  # reason, then answer
    assert verdict["properties"]["choice"]["enum"] == ["A", "B", "tie"]
    assert verdict["properties"]["confidence"]["maximum"] == 100  # the model's 0-100, stored as 0-1


def _persona(**changes: object) -> pl.DataFrame:
    row = {
        "persona_id": "p1",
        "spec": "s",
        "respondent_id": "r1",
        "replicate": 0,
        "group": "g",
        "attributes": {"age": "40"},
        "attitudes": {"t": "low"},
        "weight": 1.0,
        "portrayal": "You are ...",
        "run_id": "run",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    row.update(changes)
    return pl.DataFrame([row])


STRUCTS = {"attributes": ["age"], "attitudes": ["t"]}


def test_valid_rows_become_the_declared_arrow_schema():
    table = to_arrow("persona", _persona(), STRUCTS)
    assert table.schema == arrow_schema("persona", STRUCTS)
    assert not table.schema.field("persona_id").nullable


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_persona(weight=0.0), "weight: 1 values violates exclusiveMinimum"),
        (_persona(replicate=-1), "replicate: 1 values violates minimum"),
        (_persona(persona_id=None), "persona_id has nulls"),
        (_persona().drop("portrayal"), "columns missing ['portrayal']"),
    ],
)
def test_violations_are_refused(frame, message):
    with pytest.raises(SchemaViolation, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_arrow("persona", frame, STRUCTS)


def test_enum_values_are_checked():
    judgment = {name: None for name in load("judgment")["properties"]}
    judgment.update(
        persona_id="p",
        pair_id="q",
        prompt_id="i",
        topic="t",
        order="CD",
        sample=0,
        first_response_id="a",
        second_response_id="b",
        judge_backend="x",
        judge_model="m",
        simulated=False,
        run_id="r",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(SchemaViolation, match="order"):
        to_arrow("judgment", pl.DataFrame([judgment]))
