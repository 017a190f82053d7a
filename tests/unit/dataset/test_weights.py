"""Fair-PP's sample weights (dataset/weights.py) on crafted preferences whose weights are worked out by hand."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

from polypref.dataset.weights import fairpp_weight_parts, fairpp_weights

# Three personas, three pairs. p1: A and B chose x, C chose y. p2: A chose x, B and C chose y. p3: all chose x.
CHOICES = {("A", "p1"): "x", ("B", "p1"): "x", ("C", "p1"): "y"}
CHOICES |= {("A", "p2"): "x", ("B", "p2"): "y", ("C", "p2"): "y"}
CHOICES |= {("A", "p3"): "x", ("B", "p3"): "x", ("C", "p3"): "x"}


def _prefs(choices: dict[tuple[str, str], str]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "persona_id": [p for p, _ in choices],
            "pair_id": [q for _, q in choices],
            "chosen_id": list(choices.values()),
        }
    )


def test_tiers_and_weights_follow_fair_pps_formula() -> None:
    weights = fairpp_weights(_prefs(CHOICES))
    got = {(r["persona_id"], r["pair_id"]): (r["tier"], r["weight"]) for r in weights.iter_rows(named=True)}
    # A: p3 alone in tier 1, p1 in tier 2 (C differs), p2 in tier 3 (B, C differ): raw 1/3, 2/3, 1 -> / 2
    # B: p1 and p2 in tier 2 (raw 2/3 x 1/2 = 1/3), p3 in tier 1 (raw 1/3): each tier 1/2, every row 1/2
    # C: mirror of A
    expected = {
        ("A", "p1"): (2, 1 / 3),
        ("A", "p2"): (3, 1 / 2),
        ("A", "p3"): (1, 1 / 6),
        ("B", "p1"): (2, 1 / 2),
        ("B", "p2"): (2, 1 / 2),
        ("B", "p3"): (1, 1 / 2),
        ("C", "p1"): (3, 1 / 2),
        ("C", "p2"): (2, 1 / 3),
        ("C", "p3"): (1, 1 / 6),
    }
    assert got.keys() == expected.keys()
    for key, (tier, weight) in expected.items():
        assert got[key][0] == tier and got[key][1] == pytest.approx(weight), key


def test_alpha_and_beta_and_a_persona_missing_a_pair() -> None:
    choices = {k: v for k, v in CHOICES.items() if k != ("C", "p1")}  # C's p1 was filtered out
    weights = fairpp_weights(_prefs(choices), alpha=2.0, beta=0.0, missing_as_dissent=False)
    got = {(r["persona_id"], r["pair_id"]): (r["tier"], r["weight"]) for r in weights.iter_rows(named=True)}
    assert got[("A", "p1")][0] == 1  # no one left who chose otherwise
    # A: tiers 1 (p1, p3) and 3 (p2); beta 0 ignores tier sizes: raw (1/3)^2, (3/3)^2 -> 0.1, 0.9
    assert got[("A", "p1")][1] == pytest.approx(0.1) and got[("A", "p2")][1] == pytest.approx(0.9)
    assert weights.height == len(choices)


def test_the_same_preferences_give_bit_identical_weights_in_any_row_order() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    personas, pairs = 300, 200
    frame = pl.DataFrame(
        {
            "persona_id": np.repeat([f"persona-{i}" for i in range(personas)], pairs),
            "pair_id": np.tile([f"pair-{j}" for j in range(pairs)], personas),
            "chosen_id": rng.choice(["a", "b"], personas * pairs),
        }
    )
    first = fairpp_weights(frame.lazy())
    for seed in range(3):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        assert fairpp_weights(shuffled.lazy()).equals(first)  # exactly: a push compares bytes
    assert first.group_by("persona_id").agg(pl.col("weight").sum())["weight"].min() > 0


def test_weights_in_parts_are_the_whole_weights_cut_between_personas() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    frame = pl.DataFrame(
        {
            "persona_id": rng.choice([f"persona-{i}" for i in range(97)], 5000),
            "pair_id": rng.choice([f"pair-{j}" for j in range(41)], 5000),
            "chosen_id": rng.choice(["a", "b", "c"], 5000),
        }
    ).unique(["persona_id", "pair_id"])
    whole = fairpp_weights(frame.lazy())
    for rows_per_part in (1, 7, 300, 10_000):
        parts = list(fairpp_weight_parts(frame.lazy(), rows_per_part=rows_per_part))
        assert pl.concat(parts).equals(whole)  # bit-identical: the card and a push compare bytes
        for a, b in itertools.pairwise(parts):
            assert a["persona_id"].max() < b["persona_id"].min()  # whole personas, in order
        most = frame["persona_id"].value_counts()["count"].max()
        assert max(p.height for p in parts) < rows_per_part + most  # past the cut by less than one persona
    assert len(list(fairpp_weight_parts(frame.lazy(), rows_per_part=300))) > 5


def test_no_preferences_give_no_parts_and_an_empty_frame() -> None:
    empty = _prefs({})
    assert list(fairpp_weight_parts(empty)) == []
    assert fairpp_weights(empty).height == 0 and fairpp_weights(empty).columns == [
        "persona_id",
        "pair_id",
        "tier",
        "weight",
    ]
