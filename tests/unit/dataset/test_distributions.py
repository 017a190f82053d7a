"""Soft labels (dataset/distributions.py) on hand-made judgments: counts, shares, Wilson intervals, indifference."""

from __future__ import annotations

import polars as pl
import pytest

from polypref.dataset.distributions import distribution_rows, group_counts, unit_outcomes, wilson

# pair p: response a is "x", b is "y"
SHOWN = {"AB": ("x", "y"), "BA": ("y", "x")}


def _judgments(units: list[tuple[str, str, str | None, str | None]], pair: str = "p") -> pl.DataFrame:
    """Both orders of each unit (persona, chosen side or None, drop reason, true side or None)."""
    rows = []
    for persona, _, reason, truth in units:
        for order, (first, second) in SHOWN.items():
            # the simulator's truth in shown order: side a is "A" when shown first
            shown = (
                None
                if truth is None
                else truth
                if truth == "tie"
                else "A"
                if (truth == "a") == (order == "AB")
                else "B"
            )
            rows.append((persona, pair, "q", "t", order, first, second, shown, reason))
    columns = ["persona_id", "pair_id", "prompt_id", "topic", "order", "first_response_id", "second_response_id"]
    return pl.DataFrame(rows, schema=[*columns, "true_choice", "drop_reason"], orient="row")


def _preferences(units: list[tuple[str, str, str | None, str | None]], pair: str = "p") -> pl.DataFrame:
    kept = [(persona, pair, {"a": "x", "b": "y"}[side]) for persona, side, reason, _ in units if reason is None]
    return pl.DataFrame(kept, schema=["persona_id", "pair_id", "chosen_id"], orient="row")


UNITS = [  # (persona, kept side, drop reason, true side)
    # group g1: 3 chose a, 5 chose b, 2 indifferent (the reason's new name and its old one) -> 10 counted
    *[(f"g1-{i}", "a", None, "a") for i in range(3)],
    *[(f"g1-{i}", "b", None, "b") for i in range(3, 8)],
    ("g1-8", "-", "indifferent", "tie"),
    ("g1-9", "-", "tie", "tie"),
    # group g2: one chose a; one dropped for low confidence and one swap inconsistent: not counted, truth counts
    ("g2-0", "a", None, "a"),
    ("g2-1", "-", "low_confidence", "b"),
    ("g2-2", "-", "swap_inconsistent", "tie"),
    # group g3: nothing counted, so no row of its own
    ("g3-0", "-", "no_majority", "a"),
]
GROUPS = pl.DataFrame({"persona_id": [u[0] for u in UNITS], "group": [u[0][:2] for u in UNITS]})


def _rows(units=UNITS) -> pl.DataFrame:
    return distribution_rows(group_counts(unit_outcomes(_judgments(units), _preferences(units)), GROUPS))


def test_counts_shares_and_indifference_per_group_and_overall() -> None:
    rows = _rows()
    assert rows["group"].to_list() == [None, "g1", "g2"]  # overall first; g3 counted no one
    overall, g1, g2 = rows.iter_rows(named=True)
    assert (g1["personas"], g1["votes_a"], g1["votes_b"], g1["votes_indifferent"]) == (10, 3, 5, 2)
    assert (g1["share_a"], g1["share_b"], g1["share_indifferent"]) == (0.3, 0.5, 0.2)
    assert (g2["personas"], g2["votes_a"], g2["votes_b"], g2["votes_indifferent"]) == (1, 1, 0, 0)
    assert (overall["personas"], overall["votes_a"], overall["votes_b"], overall["votes_indifferent"]) == (11, 4, 5, 2)
    assert overall["prompt_id"] == "q" and overall["topic"] == "t"


def test_wilson_interval_matches_the_hand_computed_one() -> None:
    g1 = _rows().filter(pl.col("group") == "g1").row(0, named=True)
    # 3 of 10, z = 1.959964: centre (0.3 + z^2/20) / (1 + z^2/10), half-width z / (1 + z^2/10) * sqrt(0.021 + z^2/400)
    assert g1["share_a_low"] == pytest.approx(0.1078, abs=1e-4)
    assert g1["share_a_high"] == pytest.approx(0.6032, abs=1e-4)
    # 5 of 10
    assert g1["share_b_low"] == pytest.approx(0.2366, abs=1e-4)
    assert g1["share_b_high"] == pytest.approx(0.7634, abs=1e-4)
    # the edges: 0 of n starts at 0, n of n ends at 1, and both stay inside [0, 1]
    ends = [*wilson(pl.lit(0.0), pl.lit(4.0)), *wilson(pl.lit(4.0), pl.lit(4.0))]
    none_low, none_high, all_low, all_high = pl.select(e.alias(str(i)) for i, e in enumerate(ends)).row(0)
    assert (none_low, all_high) == (0.0, 1.0)
    assert none_high == pytest.approx(0.4899, abs=1e-4) and all_low == pytest.approx(1 - 0.4899, abs=1e-4)


def test_true_shares_count_every_persona_that_judged_the_pair() -> None:
    overall, g1, g2 = _rows().iter_rows(named=True)
    assert (g1["true_personas"], g1["true_share_a"], g1["true_share_b"], g1["true_share_indifferent"]) == (
        10,
        0.3,
        0.5,
        0.2,
    )
    # g2: a, b and tie, though only one persona was counted
    assert g2["true_personas"] == 3 and g2["true_share_a"] == pytest.approx(1 / 3)
    # overall: g3's persona, with no row of its own, is in the population too
    assert overall["true_personas"] == 14 and overall["true_share_a"] == pytest.approx(5 / 14)


def test_a_judge_without_truth_gives_null_true_shares() -> None:
    units = [(p, side, reason, None) for p, side, reason, _ in UNITS]
    rows = _rows(units)
    assert rows["true_personas"].null_count() == rows.height == 3
    assert rows["true_share_a"].null_count() == rows["true_share_indifferent"].null_count() == 3
    assert rows["votes_indifferent"].to_list() == [2, 2, 0]


def test_side_a_is_the_pairs_response_a_whatever_order_it_was_shown_in() -> None:
    # only the BA order survived (the AB rows of a unit can be dropped as invalid): a_id still comes out as x
    units = [("g1-0", "a", None, "a"), ("g1-1", "b", None, "b"), ("g1-2", "b", None, "b")]
    judgments = _judgments(units).filter(pl.col("order") == "BA")
    rows = distribution_rows(group_counts(unit_outcomes(judgments, _preferences(units)), GROUPS))
    assert rows.filter(pl.col("group").is_null())[["votes_a", "votes_b", "true_share_a"]].row(0) == (1, 2, 1 / 3)


def test_a_persona_missing_from_the_personas_config_is_an_error() -> None:
    units = unit_outcomes(_judgments(UNITS), _preferences(UNITS))
    with pytest.raises(ValueError, match="missing from the personas config"):
        group_counts(units, GROUPS.head(3))
