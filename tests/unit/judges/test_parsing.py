from __future__ import annotations

import math

import pytest

from polypref.judges.parsing import parse_choice, parse_verdict
from polypref.llms.base import request_schema

GOOD = '{"rationale": "Closer to my view.", "choice": "B", "strength": 4, "confidence": 85}'


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"```json\n{GOOD}\n```",
        f"Sure! Here is my verdict:\n{GOOD}\nHope that helps.",
        GOOD.replace("Closer", "Clo\tser\x04"),
    ],  # raw control characters from a small model
)
def test_verdicts_are_found_and_scaled(text):
    verdict, error = parse_verdict(text, allow_ties=False)
    assert error is None
    assert (verdict.choice, verdict.strength, verdict.confidence) == ("B", 4, 0.85)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("", "unparseable"),
        ('{"rationale": "x", "choice": "B", "strength": 4', "unparseable"),
        ("The answer is B.", "unparseable"),
        ('{"rationale": "x", "choice": "C", "strength": 4, "confidence": 85}', "invalid_verdict"),
        ('{"rationale": "x", "choice": "A", "strength": 9, "confidence": 85}', "invalid_verdict"),
        (
            '{"rationale": "x", "choice": "A", "strength": 2, "confidence": 0.8, "extra": 1}',
            "invalid_verdict",
        ),
        ('{"rationale": "x", "choice": "tie", "strength": 2, "confidence": 50}', "invalid_verdict"),
        ("I'm sorry, but I can't role-play this person.", "refusal"),
    ],
)
def test_failures_have_a_category(text, category):
    verdict, error = parse_verdict(text, allow_ties=False)
    assert verdict is None and error.split(":")[0] == category


def test_ties_when_allowed():
    verdict, error = parse_verdict(GOOD.replace('"B"', '"tie"'), allow_ties=True)
    assert error is None and verdict.choice == "tie"


def test_choice_mode_confidence_is_renormalised_probability():
    verdict, error = parse_choice("A", {"A": math.log(0.6), "B": math.log(0.2)}, allow_ties=False)
    assert error is None and verdict.choice == "A" and verdict.confidence == pytest.approx(0.75)
    assert parse_choice("A", None, allow_ties=False)[1].startswith("no_logprobs")
    assert parse_choice("maybe", {"A": -1.0}, allow_ties=False)[1].startswith("unparseable")


def test_request_schema_follows_the_tie_setting():
    assert request_schema(False)["properties"]["choice"]["enum"] == ["A", "B"]
    assert request_schema(True)["properties"]["choice"]["enum"] == ["A", "B", "tie"]
    assert request_schema(False)["additionalProperties"] is False
