"""Candidates for human annotation (dataset/review.py) on crafted preferences and judgments."""

from __future__ import annotations

import polars as pl
import pytest

from polypref.dataset.review import group_splits, inconsistent_judgments


def test_a_split_group_lists_its_personas_and_a_clear_or_small_one_does_not() -> None:
    rows = [  # (persona, group, pair, chosen, rejected)
        *[(f"s{i}", "south", "p1", *("xy" if i < 3 else "yx")) for i in range(5)],  # 3 of 5 chose x: 0.6, not split
        *[(f"s{i}", "south", "p2", *("xy" if i < 2 else "yx")) for i in range(4)],  # 2 of 4: split, 0.5
        *[(f"n{i}", "north", "p2", *("xy" if i < 1 else "yx")) for i in range(2)],  # 1 of 2: split, but too few
        *[(f"w{i}", "west", "p3", *("yx" if i < 1 else "xy")) for i in range(4)],  # 3 of 4 chose x: 0.75, clear
    ]
    schema = ["persona_id", "persona_group", "pair_id", "chosen_id", "rejected_id"]
    prefs = pl.LazyFrame(rows, schema=schema, orient="row")
    flagged = group_splits(prefs).collect().sort("persona_id")
    assert flagged["persona_id"].to_list() == ["s0", "s1", "s2", "s3"] and set(flagged["pair_id"]) == {"p2"}
    assert flagged["share"].to_list() == [0.5] * 4 and set(flagged["reason"]) == {"group_split"}


def test_a_self_contradicting_judge_is_listed_once_per_unit_with_its_majority_share() -> None:
    judgments = pl.LazyFrame(
        {
            "persona_id": ["a"] * 4 + ["b"] * 2 + ["c"] * 2,
            "pair_id": ["p"] * 8,
            "winner_id": ["x", "x", "y", None, "x", "x", "x", "y"],
            "error": [None, None, None, "invalid_json: ...", None, None, None, None],
            "drop_reason": ["low_agreement"] * 4 + [None, None] + ["swap_inconsistent"] * 2,
        }
    )
    flagged = {r["persona_id"]: r["share"] for r in inconsistent_judgments(judgments).collect().iter_rows(named=True)}
    assert flagged == {"a": pytest.approx(2 / 3), "c": 0.5}  # b's judge agreed with itself; a's invalid one is out
