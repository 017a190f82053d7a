"""The ``weights`` config's knobs (issue 26 item 8): Fair-PP's formula reproduced by hand on Fair-PP-shaped data,
N/A as dissent, tier binning for large populations, and a change of knobs that rebuilds without asking a judge.

Fair-PP's reweighting toward a target persona t, over P personas:

    tier(t, q)   = 1 + #{personas j != t whose answer to q differs from t's}   (an N/A answer differs from all)
    w(t, k)      = (k / P)^alpha * (1 / n(t, k))^beta      n(t, k): t's rows whose tier is k
    weight(t, q) = w(t, tier(t, q)) / sum of w(t, k) over the tiers k that hold rows of t
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from polypref.dataset.weights import fairpp_weights
from polypref.judges import make_judge
from tests.conftest import run_cli, run_without_prefect
from tests.judges import WrapperJudge

# 7 personas A-G (Fair-PP's number), 6 pairs; x and y are a pair's two responses, None an N/A (no kept preference).
#        A    B    C    D    E    F    G
ANSWERS = {
    "q1": "x x x x x x x",  # unanimous
    "q2": "x x x x y y y",
    "q3": "x x y y y y -",  # G has no kept preference: Fair-PP's N/A
    "q4": "x y y y y y y",  # A alone
    "q5": "x x x x x x y",  # G alone
    "q6": "x x x x y y y",  # as q2
}
PERSONAS = "ABCDEFG"


def _prefs() -> pl.LazyFrame:
    rows = [
        (persona, pair, f"{pair}-{answer}")
        for pair, line in ANSWERS.items()
        for persona, answer in zip(PERSONAS, line.split(), strict=True)
        if answer != "-"
    ]
    return pl.LazyFrame(rows, schema=["persona_id", "pair_id", "chosen_id"], orient="row")


def _by_row(weights: pl.DataFrame) -> dict[tuple[str, str], tuple[int, float]]:
    return {(r["persona_id"], r["pair_id"]): (r["tier"], r["weight"]) for r in weights.iter_rows(named=True)}


def test_fair_pp_by_hand_on_seven_personas() -> None:
    # Raw tiers, N/A counted as a different answer (P = 7):
    #   A: q1 1, q2 1+3 (E F G) = 4, q3 1+4 (C D E F)+1 (G's N/A) = 6, q4 7, q5 1+1 (G) = 2, q6 4
    #   G: q1 1, q2 1+4 (A-D) = 5, q4 1+1 (A) = 2, q5 7, q6 5; no row on q3
    # A's tiers 1, 2, 4 (q2, q6), 6, 7; alpha = beta = 1:
    #   w = 1/7, 2/7, 4/7 x 1/2 = 2/7, 6/7, 7/7; sum 18/7 -> 1/18, 2/18, 2/18, 6/18, 7/18
    # G's tiers 1, 2, 5 (q2, q6), 7:
    #   w = 1/7, 2/7, 5/7 x 1/2 = 5/14, 1; sum 25/14 -> 2/25, 4/25, 5/25, 14/25
    hand = {
        ("A", "q1"): (1, 1 / 18),
        ("A", "q2"): (4, 2 / 18),
        ("A", "q3"): (6, 6 / 18),
        ("A", "q4"): (7, 7 / 18),
        ("A", "q5"): (2, 2 / 18),
        ("A", "q6"): (4, 2 / 18),
        ("G", "q1"): (1, 2 / 25),
        ("G", "q2"): (5, 5 / 25),
        ("G", "q4"): (2, 4 / 25),
        ("G", "q5"): (7, 14 / 25),
        ("G", "q6"): (5, 5 / 25),
    }
    # Every raw tier in the data: 1, 2, 4, 5, 6, 7 (six values). tiers 7 (the default) or 6 bins nothing.
    for tiers in (7, 6, None):
        got = _by_row(fairpp_weights(_prefs(), tiers=tiers))  # alpha = beta = 1, missing_as_dissent by default
        assert len(got) == 7 * 6 - 1
        for key, (tier, weight) in hand.items():
            assert got[key][0] == tier and got[key][1] == pytest.approx(weight, rel=1e-12), (tiers, key)
    # alpha 2, beta 0.5, for A: w = (1/7)^2, (2/7)^2, (4/7)^2 / sqrt(2), (6/7)^2, 1 -> x 49: 1, 4, 8 sqrt(2), 36, 49
    got = _by_row(fairpp_weights(_prefs(), alpha=2.0, beta=0.5))
    total = 90 + 8 * math.sqrt(2)
    for pair, numerator in {
        "q1": 1,
        "q5": 4,
        "q2": 8 * math.sqrt(2),
        "q6": 8 * math.sqrt(2),
        "q3": 36,
        "q4": 49,
    }.items():
        assert got[("A", pair)][1] == pytest.approx(numerator / total, rel=1e-12), pair


def test_missing_as_dissent_moves_exactly_the_tiers_of_pairs_someone_lacks() -> None:
    dissent = _by_row(fairpp_weights(_prefs(), missing_as_dissent=True))
    ignored = _by_row(fairpp_weights(_prefs(), missing_as_dissent=False))
    assert dissent.keys() == ignored.keys()
    # Only q3 lacks a persona (G): each of its rows is one tier higher when G's N/A counts as a dissent
    # (A: 1 + 4 + 1 = 6 against 1 + 4 = 5; C: 1 + 2 + 1 = 4 against 3); every other row keeps its tier.
    for key in dissent:
        assert dissent[key][0] == ignored[key][0] + (key[1] == "q3"), key
    assert (dissent[("A", "q3")][0], ignored[("A", "q3")][0]) == (6, 5)
    assert (dissent[("C", "q3")][0], ignored[("C", "q3")][0]) == (4, 3)


def test_binning_keeps_few_raw_tiers_and_bins_many_into_even_tiers() -> None:
    # 5 tiers for 6 distinct raw tiers: binned. Rows per raw tier 1, 2, 4, 5, 6, 7: 7, 12, 12, 6, 2, 2 (41).
    # Each raw tier goes to the bin of its middle row's quantile, 1 + floor(5 x (rows before + half its own) / 41):
    #   1 + floor(5 x 3.5/41, 5 x 13/41, 5 x 25/41, 5 x 34/41, 5 x 38/41, 5 x 40/41) = 1, 2, 4, 5, 5, 5
    # then no bin is skipped (4 -> 3, 5 -> 4), so each of the 5 tiers holds rows: 1, 2, 3, 4, 5, 5.
    raw = _by_row(fairpp_weights(_prefs(), tiers=None))
    binned = _by_row(fairpp_weights(_prefs(), tiers=5))
    assert {(raw[k][0], binned[k][0]) for k in raw} == {(1, 1), (2, 2), (4, 3), (5, 4), (6, 5), (7, 5)}
    pairs = sorted((raw[k][0], binned[k][0]) for k in raw)
    assert all(b1 <= b2 for (_, b1), (_, b2) in itertools.pairwise(pairs))  # monotone in the raw tier


def _plan(config: Path, out: Path, settings: list[str]) -> pipeline.BuildPlan:
    return pipeline.plan(load_config(config, ["population.size=200", *settings]), out)


def _weights(out: Path) -> pl.DataFrame:
    # every split (a file each): the weights are the whole dataset's; sorted, as files order rows by split
    weights = pl.read_parquet(out / "data" / "weights").select("persona_id", "pair_id", "tier", "weight")
    return weights.sort("persona_id", "pair_id")


def test_two_hundred_personas_fill_seven_tiers_and_beta_acts(tiny_config, tmp_path):
    out = tmp_path / "out"
    run_without_prefect(_plan(tiny_config, out, []))
    weights = _weights(out)
    preferences = pl.read_parquet(sorted((out / "data" / "preferences").glob("*.parquet")))
    assert weights.height == preferences.height
    per_tier = weights["tier"].value_counts().sort("tier")
    assert per_tier["tier"].to_list() == list(range(1, 8))  # each of the 7 tiers holds rows
    assert per_tier["count"].min() >= weights.height / 7 / 3  # many rows each, not one
    # raw, the same rows spread over many more tiers of few rows each
    raw = fairpp_weights(preferences.lazy(), tiers=None)
    assert raw["tier"].n_unique() > 7 and raw["tier"].min() > 7
    # beta now matters: some persona has several rows in one tier, and beta 0 weighs them otherwise
    assert weights.group_by("persona_id", "tier").len()["len"].max() > 1
    flat = fairpp_weights(preferences.lazy(), beta=0.0).sort("persona_id", "pair_id")
    assert flat["tier"].equals(weights["tier"]) and not flat["weight"].equals(weights["weight"])
    assert (weights["weight"] > 0).all()


def test_changing_the_knobs_keeps_the_shards_and_the_judge_and_remakes_the_weights(tiny_config, tmp_path):
    out = tmp_path / "out"
    first = _plan(tiny_config, out, [])
    counting = WrapperJudge(make_judge(first.config.judge, first.config.seed))
    run_without_prefect(first, counting)
    assert counting.asked > 0
    before = _weights(out)
    knobs = ["weights.alpha=2", "weights.beta=0.5", "weights.tiers=null", "weights.missing_as_dissent=false"]
    for knob in knobs:  # no shard holds a weight: the same shards and judge, the weights made anew at the end
        other = _plan(tiny_config, out, [knob])
        assert other.fingerprint == first.fingerprint and other.judge_key == first.judge_key, knob
    second = _plan(tiny_config, out, knobs)
    again = WrapperJudge(make_judge(second.config.judge, second.config.seed))
    run_without_prefect(second, again)
    assert again.asked == 0  # every judgment served by the store
    after = _weights(out)
    assert after.select("persona_id", "pair_id").equals(before.select("persona_id", "pair_id"))
    assert not after["weight"].equals(before["weight"]) and after["tier"].min() > 7  # raw tiers now
    card = (out / "README.md").read_text()
    assert "alpha 2.0, beta 0.5" in card and "is left out of its tier" in card and "raw tiers, never binned" in card


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("alpha: -1", "weights.alpha"),
        ("beta: -0.5", "weights.beta"),
        ("tiers: 0", "weights.tiers"),
        ("tiers: 2.5", "weights.tiers"),
        ("missing_as_dissent: maybe", "weights.missing_as_dissent"),
        ("gamma: 1", "weights.gamma"),
    ],
)
def test_invalid_knobs_exit_2_naming_the_field(tiny_config, setting, field):
    config = yaml.safe_load(tiny_config.read_text())
    config["weights"] = yaml.safe_load(setting)
    tiny_config.write_text(yaml.safe_dump(config))
    code, _, stderr = run_cli("validate", str(tiny_config))
    assert code == 2 and field in stderr and str(tiny_config) in stderr, stderr
    assert "Traceback" not in stderr
