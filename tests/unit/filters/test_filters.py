"""Filters on crafted verdicts: exact counts per reason, and what becomes a preference."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from polypref.analysis.calibration import shipped
from polypref.config import FiltersConfig
from polypref.dataset.tables import RunMeta, judgments_frame, preferences_frame
from polypref.filters import apply_filters, filters_from_config, reason_counts
from polypref.items import load_items, make_pairs
from polypref.judges import VERDICT_COLUMNS, JudgeInfo
from polypref.population import load_spec, sample_population
from polypref.records import UnitBatch

META = RunMeta("run", datetime(2026, 1, 1, tzinfo=UTC), JudgeInfo("scripted", "crafted", simulated=False))


def _batch(tiny, samples: int) -> UnitBatch:
    spec = load_spec(str(tiny["spec"]))
    personas = sample_population(spec, 2, "proportional", seed=0).personas
    pairs = make_pairs(load_items(str(tiny["items"]), spec))[:2]
    return UnitBatch.persona_major(personas, pairs, samples)


def _verdicts(script: list[tuple[str | None, float]]) -> pl.DataFrame:
    """(choice or None for an invalid verdict, confidence) per unit, in unit order."""
    return pl.DataFrame(
        {
            "unit": range(len(script)),
            "choice": [c for c, _ in script],
            "strength": [3 if c else None for c, _ in script],
            "confidence": [conf if c else None for c, conf in script],
            "rationale": ["r" if c else None for c, _ in script],
            "raw": [None] * len(script),
            "error": [None if c else "unparseable" for c, _ in script],
            "true_choice": [None] * len(script),
            "prompt_tokens": [None] * len(script),
            "completion_tokens": [None] * len(script),
            "attempts": [1] * len(script),
            "response_format": [None] * len(script),
        },
        schema=VERDICT_COLUMNS,
    )


def _run(tiny, samples: int, script, filters: FiltersConfig):
    batch = _batch(tiny, samples)
    assert len(batch) == len(script)
    frame = apply_filters(judgments_frame(batch, _verdicts(script), META), filters_from_config(filters))
    return batch, frame, preferences_frame(frame, batch, META, shipped())


# unit order within a (persona, pair): AB s0, AB s1, BA s0, BA s1.  "A" in AB and "B" in BA name response a.
SCRIPT = [
    # persona 0, pair 0: consistent for a
    ("A", 0.9),
    ("A", 0.9),
    ("B", 0.9),
    ("B", 0.9),
    # persona 0, pair 1: sample 1 flips with the order (A in both) -> swap_inconsistent for 2; 3 of 4 for a
    ("A", 0.9),
    ("A", 0.9),
    ("B", 0.9),
    ("A", 0.9),
    # persona 1, pair 0: one invalid verdict; its partner cannot be checked; sample 1 consistent
    (None, 0.0),
    ("A", 0.8),
    ("B", 0.8),
    ("B", 0.8),
    # persona 1, pair 1: consistent for b, but unsure
    ("B", 0.3),
    ("B", 0.3),
    ("A", 0.3),
    ("A", 0.3),
]


def test_exact_counts_per_reason(tiny):
    _, frame, prefs = _run(tiny, 2, SCRIPT, FiltersConfig(min_agreement=0.75, min_confidence=0.6))
    assert reason_counts(frame) == {
        "kept": 8,
        "swap_inconsistent": 2,
        "invalid": 1,
        "swap_unverifiable": 1,
        "low_confidence": 4,
    }
    assert frame.filter(pl.col("drop_reason") == "invalid")["error"].to_list() == ["unparseable"]
    assert prefs.height == 3
    assert sorted(prefs["n_judgments"].to_list()) == [2, 2, 4]
    # agreement counts only judgments that survived the swap filter: the split sample of persona 0, pair 1
    # is dropped before the vote, so the two judgments left agree fully
    assert sorted(prefs["agreement"].to_list()) == [1.0, 1.0, 1.0]


def test_preference_names_the_majority_response(tiny):
    batch, _, prefs = _run(tiny, 2, SCRIPT, FiltersConfig(min_agreement=0.75, min_confidence=0.6))
    pair0 = batch.pairs[0]
    row = prefs.filter((pl.col("persona_id") == batch.personas[0].id) & (pl.col("pair_id") == pair0.id)).row(
        0, named=True
    )
    assert (row["chosen_id"], row["rejected_id"]) == (pair0.a.id, pair0.b.id)
    assert (row["chosen"], row["rejected"]) == (pair0.a.text, pair0.b.text)
    assert row["prompt"] == pair0.item.prompt


def test_stricter_agreement_drops_the_split_pair(tiny):
    # without the swap filter, persona 0, pair 1 votes 3 to 1 for response a: agreement 0.75
    config = FiltersConfig(swap_consistency=False, min_agreement=0.8, min_confidence=0.6)
    _, frame, prefs = _run(tiny, 2, SCRIPT, config)
    assert reason_counts(frame) == {"kept": 7, "invalid": 1, "low_agreement": 4, "low_confidence": 4}
    assert prefs.height == 2
    loose = FiltersConfig(swap_consistency=False, min_agreement=0.75, min_confidence=0.6)
    _, _, prefs = _run(tiny, 2, SCRIPT, loose)
    assert sorted(prefs["agreement"].to_list()) == [0.75, 1.0, 1.0]


def test_filters_off_keep_everything_valid(tiny):
    _, frame, _ = _run(tiny, 2, SCRIPT, FiltersConfig(swap_consistency=False, min_agreement=0, min_confidence=0))
    assert reason_counts(frame) == {"kept": 15, "invalid": 1}


def test_ties_and_split_votes_make_no_preference(tiny):
    script = [
        ("tie", 0.9),
        ("tie", 0.9),  # persona 0, pair 0: a tie both ways
        ("A", 0.9),
        ("A", 0.9),  # persona 0, pair 1: 1 vote each way -> no majority
        ("A", 0.9),
        ("B", 0.9),  # persona 1, pair 0: consistent for a
        ("B", 0.9),
        ("A", 0.9),
    ]  # persona 1, pair 1: consistent for b
    _, frame, prefs = _run(tiny, 1, script, FiltersConfig(swap_consistency=False, min_agreement=0, min_confidence=0))
    assert reason_counts(frame) == {"kept": 4, "indifferent": 2, "no_majority": 2}
    assert prefs.height == 2
    assert frame.filter(pl.col("choice") == "tie")["side"].to_list() == ["tie", "tie"]
    assert frame.filter(pl.col("choice") == "tie")["winner_id"].to_list() == [None, None]
